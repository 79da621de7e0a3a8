//! Generated bindings for the `durable:function` world, kept apart from hand-written code.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "durable-function",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use durable::function::context;
pub use durable::function::types;

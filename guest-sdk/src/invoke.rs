//! Chained invokes: [`Context::invoke`] calls another durable function of the same tenant
//! and waits for its result. The callee is an execution of its own; the caller is unloaded
//! until it ends.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::{decode, Context, Name};
use crate::error::{Error, SERIALIZATION_ERROR};
use crate::host;
use crate::wit;

/// Options of [`Context::invoke_with`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvokeConfig {
    /// The tenant the callee runs in. Only the caller's own tenant is allowed (any other
    /// fails the invoke with `Invoke.TenantMismatch`); recorded in history when set.
    pub tenant_id: Option<String>,
}

impl InvokeConfig {
    /// Names the tenant the callee runs in (recorded in history; must be the caller's).
    pub fn tenant_id(mut self, tenant: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant.into());
        self
    }
}

impl Context {
    /// Invokes the durable function `function` (of this execution's tenant, its latest
    /// version) with `input` and waits for its output, deserialized into `O`.
    ///
    /// The callee runs as an execution of its own (its `parent_execution_id` is this
    /// execution), started exactly once whatever crashes happen; this execution is unloaded
    /// until it ends. On replay the recorded outcome is returned and nothing is started.
    /// Errors: the callee's own error when it failed (or `Execution.Timeout`,
    /// `Execution.Stopped` when it timed out or was stopped); `Invoke.FunctionNotFound`,
    /// `Invoke.Refused` (the tenant's rate or quotas, the function's `max_queued`) when no
    /// callee started; `SerializationError` when `input` or the output do not fit the types.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[derive(Serialize)]
    /// struct Charge { order: String, cents: u64 }
    /// #[derive(Deserialize)]
    /// struct Receipt { payment_id: String }
    ///
    /// let charge = Charge { order: "o-1".into(), cents: 1250 };
    /// let receipt: Receipt = ctx.invoke("charge", "payment", &charge)?;
    /// # let _ = receipt.payment_id; Ok(()) }
    /// ```
    pub fn invoke<'n, I, O>(
        &mut self,
        name: impl Into<Name<'n>>,
        function: &str,
        input: &I,
    ) -> Result<O, Error>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        self.invoke_with(name, function, input, InvokeConfig::default())
    }

    /// [`invoke`](Self::invoke) with options.
    pub fn invoke_with<'n, I, O>(
        &mut self,
        name: impl Into<Name<'n>>,
        function: &str,
        input: &I,
        config: InvokeConfig,
    ) -> Result<O, Error>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let name = name.into();
        let json = serde_json::to_string(input).map_err(|e| {
            Error::new(
                SERIALIZATION_ERROR,
                format!("could not serialize the invoke input: {e}"),
            )
        })?;
        let options = wit::InvokeOptions {
            tenant_id: config.tenant_id,
        };
        match host::invoke(self.id(), name.as_deref(), function, &json, &options) {
            Ok(output) => decode(&output, "invoke result"),
            Err(e) => Err(e.into()),
        }
    }
}

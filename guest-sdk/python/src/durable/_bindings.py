"""The generated bindings of the `durable-function-http` world, in one place. Not part of
the API. componentize-py generates `wit_world` while it builds the component; outside a
build (unit tests on CPython) this module imports nothing and the SDK's host calls fail.
"""

try:  # pragma: no cover - only inside componentize-py
    from componentize_py_types import Err, Ok  # noqa: F401
    from wit_world.imports import context as host  # noqa: F401
    from wit_world.imports.durable_function_types import (  # noqa: F401
        Backoff_Exponential,
        BatchKind,
        BatchOptions,
        BatchState_Completed,
        BranchState_Run,
        CompletionConfig,
        Backoff_Linear,
        CallbackOptions,
        ConditionState_Failed,
        ConditionState_Succeeded,
        ContextKind,
        ContextState_Failed,
        ContextState_Run,
        ContextState_Succeeded,
        ErrorObject,
        InvokeOptions,
        Jitter,
        LogLevel,
        RetryPolicy,
        StepOptions,
        StepSemantics,
        StepState_Failed,
        StepState_Run,
        StepState_Succeeded,
    )

    AVAILABLE = True
except ImportError:  # CPython outside a component
    AVAILABLE = False

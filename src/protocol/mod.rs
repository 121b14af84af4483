//! What each Durable Object answers to, one file per object: its operations, the views they
//! answer with and the namespace they are sent to. Pure, so the wire forms are tested natively.
//!
//! Every operation is its own type naming its object and its answer ([`Operation`]); a call
//! (`objects::call`) is therefore checked at compile time on both ends: the caller gets the
//! answer type the object is bound to produce, and an operation cannot reach another
//! object's namespace. The object side implements the handler trait [`protocol!`] generates,
//! one method per operation.

use serde::{de::DeserializeOwned, Serialize};

pub mod access;
pub mod app;
pub mod audience;
pub mod autoreplies;
pub mod campaign;
pub mod device;
pub mod guard;
pub mod otp;
pub mod registry;
pub mod sender;
pub mod webhooks;

/// A Durable Object namespace and the operations its objects decode.
pub trait Object {
    /// The binding in `wrangler.toml`.
    const BINDING: &'static str;
    /// Every operation, as the object decodes it.
    type Op: Serialize + DeserializeOwned;
}

/// One operation: the object it goes to and what that object answers.
pub trait Operation: Into<<Self::Object as Object>::Op> {
    type Object: Object;
    type Answer: Serialize + DeserializeOwned;
}

/// Declares an object's operations: the wire enum (`{"op": "<snake_case variant>", …fields}`),
/// one [`Operation`] per variant, and the handler trait the object implements.
///
/// ```ignore
/// protocol! {
///     /// The operator's app index.
///     Registry = "REGISTRY", RegistryOp, RegistryHandler {
///         Add(AddApp) -> () => add,
///         List(ListApps) -> AppPage => list,
///     }
/// }
/// ```
///
/// An object with many operations groups them in facets, each in its own file with its own
/// handler trait (implemented by the object in the module that owns that facet's tables):
/// `facets { Webhooks(WebhookOp: WebhookHandler) }` in the object's declaration, and
/// `facet WebhookOp of App via AppOp::Webhooks, WebhookHandler { … }` for the facet. A facet's
/// operation travels as `{"op": "webhooks", "call": "<snake_case variant>", …fields}`.
#[macro_export]
macro_rules! protocol {
    (
        $(#[$meta:meta])*
        $object:ident = $binding:literal, $op:ident, $handler:ident {
            $( $(#[$vmeta:meta])* $variant:ident($payload:ty) -> $answer:ty => $method:ident ),+ $(,)?
        }
        $( facets { $( $(#[$fmeta:meta])* $fvariant:ident($fop:ident: $fhandler:ident) ),+ $(,)? } )?
    ) => {
        $(#[$meta])*
        pub struct $object;

        impl $crate::protocol::Object for $object {
            const BINDING: &'static str = $binding;
            type Op = $op;
        }

        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum $op {
            $( $(#[$vmeta])* $variant($payload), )+
            $($( $(#[$fmeta])* $fvariant($fop), )+)?
        }

        $(
            impl From<$payload> for $op {
                fn from(op: $payload) -> Self {
                    Self::$variant(op)
                }
            }

            impl $crate::protocol::Operation for $payload {
                type Object = $object;
                type Answer = $answer;
            }
        )+

        /// What the object does for each operation.
        #[allow(async_fn_in_trait)]
        pub trait $handler {
            $( async fn $method(&self, op: $payload) -> Result<$answer, $crate::domain::error::ApiError>; )+
        }

        impl $op {
            /// Runs the operation on `handler` and encodes its answer, or its error, as JSON.
            pub async fn dispatch<H: $handler $($( + $fhandler )+)?>(self, handler: &H) -> Vec<u8> {
                match self {
                    $( Self::$variant(op) => $crate::protocol::encode(&handler.$method(op).await), )+
                    $($( Self::$fvariant(op) => op.dispatch(handler).await, )+)?
                }
            }
        }
    };
    (
        $(#[$meta:meta])*
        facet $op:ident of $object:ident via $parent:ident::$pvariant:ident, $handler:ident {
            $( $(#[$vmeta:meta])* $variant:ident($payload:ty) -> $answer:ty => $method:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "call", rename_all = "snake_case")]
        pub enum $op {
            $( $(#[$vmeta])* $variant($payload), )+
        }

        $(
            impl From<$payload> for $parent {
                fn from(op: $payload) -> Self {
                    $parent::$pvariant($op::$variant(op))
                }
            }

            impl $crate::protocol::Operation for $payload {
                type Object = $object;
                type Answer = $answer;
            }
        )+

        /// What the object does for each operation of this facet.
        #[allow(async_fn_in_trait)]
        pub trait $handler {
            $( async fn $method(&self, op: $payload) -> Result<$answer, $crate::domain::error::ApiError>; )+
        }

        impl $op {
            /// Runs the operation on `handler` and encodes its answer, or its error, as JSON.
            pub async fn dispatch(self, handler: &impl $handler) -> Vec<u8> {
                match self {
                    $( Self::$variant(op) => $crate::protocol::encode(&handler.$method(op).await), )+
                }
            }
        }
    };
}

/// An answer as it crosses the stub: `{"Ok": …}` or `{"Err": …}`.
pub fn encode<T: Serialize>(answer: &Result<T, crate::domain::error::ApiError>) -> Vec<u8> {
    serde_json::to_vec(answer).unwrap_or_else(|e| {
        let failed: Result<(), _> = Err(crate::domain::error::ApiError::internal(format!("unencodable answer: {e}")));
        serde_json::to_vec(&failed).expect("an error always encodes")
    })
}

/// Decodes an answer on the caller's side.
pub fn decode<O: Operation>(binding: &str, bytes: &[u8]) -> Result<O::Answer, crate::domain::error::ApiError> {
    serde_json::from_slice::<Result<O::Answer, crate::domain::error::ApiError>>(bytes)
        .map_err(|e| crate::domain::error::ApiError::internal(format!("{binding} answered undecodable JSON: {e}")))?
}

/// Decodes an operation on the object's side.
pub fn operation<O: Object>(bytes: &[u8]) -> Result<O::Op, crate::domain::error::ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| crate::domain::error::ApiError::internal(format!("undecodable operation: {e}")))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::{decode, encode};
    use crate::domain::error::ApiError;

    crate::protocol! {
        Things = "THINGS", ThingOp, ThingHandler {
            Count(Count) -> u64 => count,
        }
        facets {
            Labels(LabelOp: LabelHandler),
        }
    }

    crate::protocol! {
        facet LabelOp of Things via ThingOp::Labels, LabelHandler {
            Add(AddLabel) -> String => add_label,
        }
    }

    #[derive(Debug, Serialize, Deserialize)]
    pub struct Count {}

    #[derive(Debug, Serialize, Deserialize)]
    pub struct AddLabel {
        label: String,
    }

    struct Store;

    impl ThingHandler for Store {
        async fn count(&self, _: Count) -> Result<u64, ApiError> {
            Ok(3)
        }
    }

    impl LabelHandler for Store {
        async fn add_label(&self, op: AddLabel) -> Result<String, ApiError> {
            match op.label.is_empty() {
                true => Err(ApiError::not_found("label")),
                false => Ok(op.label.to_uppercase()),
            }
        }
    }

    /// Runs a future that never waits (the handlers above), without an executor.
    fn now<F: std::future::Future>(future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => unreachable!("the test handlers never wait"),
        }
    }

    fn run(wire: &str) -> Vec<u8> {
        now(serde_json::from_str::<ThingOp>(wire).unwrap().dispatch(&Store))
    }

    #[test]
    fn a_facets_operation_travels_under_its_facet_and_is_dispatched_to_it() {
        let op = ThingOp::from(AddLabel { label: "vip".into() });
        let wire = serde_json::to_string(&op).unwrap();
        assert_eq!(wire, r#"{"op":"labels","call":"add","label":"vip"}"#);
        assert_eq!(decode::<AddLabel>("THINGS", &run(&wire)).unwrap(), "VIP");
        assert!(matches!(
            decode::<AddLabel>("THINGS", &run(r#"{"op":"labels","call":"add","label":""}"#)),
            Err(ApiError::NotFound { .. })
        ));
        assert_eq!(decode::<Count>("THINGS", &run(r#"{"op":"count"}"#)).unwrap(), 3);
        assert!(decode::<Count>("THINGS", &encode::<&str>(&Ok("three"))).is_err());
    }
}

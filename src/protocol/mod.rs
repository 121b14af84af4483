//! What each Durable Object answers to, one file per object: its operations, the views they
//! answer with and the namespace they are sent to. Pure, so the wire forms are tested natively.
//!
//! Every operation is its own type naming its object and its answer ([`Operation`]); a call
//! (`objects::call`) is therefore checked at compile time on both ends: the caller gets the
//! answer type the object is bound to produce, and an operation cannot reach another
//! object's namespace. The object side implements the handler trait [`protocol!`] generates,
//! one method per operation.

use serde::{de::DeserializeOwned, Serialize};

pub mod campaign;
pub mod guard;
pub mod otp;
pub mod registry;
pub mod sender;

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
#[macro_export]
macro_rules! protocol {
    (
        $(#[$meta:meta])*
        $object:ident = $binding:literal, $op:ident, $handler:ident {
            $( $(#[$vmeta:meta])* $variant:ident($payload:ty) -> $answer:ty => $method:ident ),+ $(,)?
        }
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

//! The operator's index of apps: one object, named [`NAME`], that lists them; each app's
//! state stays in its own object.

use serde::{Deserialize, Serialize};

use crate::domain::ids::AppId;

/// The one registry object's name.
pub const NAME: &str = "apps";
pub const PAGE_SIZE: i64 = 50;

crate::protocol! {
    /// The `REGISTRY` namespace.
    Registry = "REGISTRY", RegistryOp, RegistryHandler {
        Add(AddApp) -> () => add,
        /// App ids, oldest first.
        List(ListApps) -> AppPage => list,
        /// Whether the app exists.
        Has(HasApp) -> bool => has,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddApp {
    pub app_id: AppId,
    pub name: String,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListApps {
    pub page: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HasApp {
    pub app_id: AppId,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AppPage {
    pub total: i64,
    pub app_ids: Vec<AppId>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    #[test]
    fn operations_keep_their_wire_form() {
        let app_id = AppId::parse("app_0123456789abcdef").unwrap();
        let op = RegistryOp::from(HasApp { app_id });
        assert_eq!(serde_json::to_string(&op).unwrap(), r#"{"op":"has","app_id":"app_0123456789abcdef"}"#);
        let back: RegistryOp = serde_json::from_str(r#"{"op":"list","page":2}"#).unwrap();
        assert!(matches!(back, RegistryOp::List(ListApps { page: 2 })));
    }

    #[test]
    fn answers_decode_as_their_operation_names_them() {
        assert!(decode::<HasApp>("REGISTRY", &encode(&Ok(true))).unwrap());
        let refused = encode::<bool>(&Err(crate::domain::error::ApiError::not_found("app")));
        assert!(matches!(decode::<HasApp>("REGISTRY", &refused), Err(crate::domain::error::ApiError::NotFound { .. })));
        // An answer of another operation's type is an internal error, not a silent default.
        assert!(decode::<ListApps>("REGISTRY", &encode(&Ok(true))).is_err());
    }
}

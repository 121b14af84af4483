//! The webhook senders, one stateless object per endpoint (named by its id), that make the
//! HTTP POSTs the app's object has signed.

use serde::{Deserialize, Serialize};

crate::protocol! {
    /// The `SENDERS` namespace.
    Sender = "SENDERS", SenderOp, SenderHandler {
        /// One POST of a delivery; its outcome, whatever it was, is the answer.
        Post(PostDelivery) -> Attempt => post,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PostDelivery {
    pub url: String,
    /// The signature headers, beside the content type and user agent every POST carries.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// How one POST went; the response body is kept only as a short excerpt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub ok: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    #[test]
    fn operations_keep_their_wire_form() {
        let post = PostDelivery {
            url: "https://example.com/hook".into(),
            headers: vec![("webhook-id".into(), "msg_1".into())],
            body: "{}".into(),
        };
        assert_eq!(
            serde_json::to_string(&SenderOp::from(post)).unwrap(),
            r#"{"op":"post","url":"https://example.com/hook","headers":[["webhook-id","msg_1"]],"body":"{}"}"#
        );
    }

    #[test]
    fn an_attempt_crosses_the_stub_as_it_left() {
        let refused = Attempt { ok: false, status: Some(500), error: Some("HTTP 500: oops".into()) };
        let bytes = encode(&Ok(refused.clone()));
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"Ok":{"ok":false,"status":500,"error":"HTTP 500: oops"}}"#
        );
        assert_eq!(decode::<PostDelivery>("SENDERS", &bytes).unwrap(), refused);
    }
}

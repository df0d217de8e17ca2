//! Request bodies that must be JSON objects.
//!
//! serde's derived `Deserialize` reads a struct from a JSON array of its fields in order, too,
//! so `["Ada"]` would join as Ada and `[null, null, null, null]` would create a room. The API
//! documents objects only; [`JsonObject`] asks the parser for a map and refuses anything else.

use super::error::{ApiError, json_rejection};
use axum::Json;
use axum::extract::{FromRequest, Request};
use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};
use std::marker::PhantomData;

/// `T`, read only from a JSON object.
pub struct JsonObject<T>(pub T);

/// A request body: a JSON object read as `T`, or the contract's error (`invalid_json`,
/// `too_large`, `unsupported_media_type`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let Json(JsonObject(body)) = Json::<JsonObject<T>>::from_request(req, state).await.map_err(json_rejection)?;
        Ok(ApiJson(body))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for JsonObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectOnly(PhantomData)).map(JsonObject)
    }
}

#[cfg(test)]
mod tests {
    use super::JsonObject;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Body {
        name: String,
        #[serde(default)]
        token: Option<String>,
    }

    #[test]
    fn objects_only() {
        let ok: JsonObject<Body> = serde_json::from_str(r#"{"name": "Ada"}"#).unwrap();
        assert_eq!(ok.0, Body { name: "Ada".into(), token: None });
        assert!(serde_json::from_str::<Body>(r#"["Ada"]"#).is_ok(), "what the wrapper is for");
        for bad in [r#"["Ada"]"#, r#"["Ada", null]"#, r#""Ada""#, "1", r#"{"name": "Ada", "extra": 1}"#] {
            assert!(serde_json::from_str::<JsonObject<Body>>(bad).is_err(), "{bad}");
        }
        let none: Option<JsonObject<Body>> = serde_json::from_str("null").unwrap();
        assert!(none.is_none());
    }
}

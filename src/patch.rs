//! Partial updates: the bodies of `PATCH` routes, where a field left out
//! keeps its value.
//!
//! Serde's `default` reads a missing field as `None`; [`present`] makes a
//! field that *is* there `Some` of whatever it holds. On an `Option<T>` field
//! that refuses `null` (a type error, 400: `null` is not "keep it"); on an
//! `Option<Option<T>>` field it tells `null` ("clear it", `Some(None)`) from
//! absent (`None`).

use serde::Deserialize;

/// `#[serde(default, deserialize_with = "crate::patch::present")]`: a field
/// that is present is `Some` of its value.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

//! Newtypes for every id, cursor and token the hub passes around (STYLE.md 7).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ModelError;

macro_rules! string_id {
    ($(#[$doc:meta] $name:ident),+ $(,)?) => {$(
        #[$doc]
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// An id made by synchub itself or a test double (not outside input).
            pub fn from_trusted(s: impl Into<String>) -> Self {
                $name(s.into())
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                if s.is_empty() || s.len() > 1024 || s.chars().any(char::is_control) {
                    return Err(ModelError::BadId { kind: stringify!($name), value: s.chars().take(64).collect() });
                }
                Ok($name(s.to_string()))
            }
        }
    )+};
}

string_id! {
    /// A synchub user (the CRM user id).
    UserId,
    /// An item's id on one side: a Graph immutable id or a CRM ContactID.
    ItemId,
}

/// A contact's key in a user's document; minted only by the hub (DESIGN "The core idea").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct HubContactId(uuid::Uuid);

impl HubContactId {
    /// A fresh, random id.
    pub fn mint() -> Self {
        HubContactId(uuid::Uuid::new_v4())
    }

    /// An id from a number, for deterministic tests and benchmarks.
    pub fn from_u128(n: u128) -> Self {
        HubContactId(uuid::Uuid::from_u128(n))
    }
}

/// Hub ids are written as 22 characters of URL-safe base64: short enough to be stored
/// inline by Automerge (≤ 23 bytes) and safe in URLs.
impl fmt::Display for HubContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use base64::Engine;
        f.write_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0.as_bytes()))
    }
}

impl FromStr for HubContactId {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use base64::Engine;
        let bad = || ModelError::BadId { kind: "HubContactId", value: s.chars().take(64).collect() };
        if s.len() != 22 {
            return Err(bad());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
        Ok(HubContactId(uuid::Uuid::from_bytes(bytes)))
    }
}

impl From<HubContactId> for String {
    fn from(id: HubContactId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for HubContactId {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The two replicas synchub keeps in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The user's Exchange mailbox (Microsoft Graph).
    Exchange,
    /// The user's CRM contact list.
    Crm,
}

impl Side {
    /// Both sides, Exchange first.
    pub const BOTH: [Side; 2] = [Side::Exchange, Side::Crm];

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Exchange => Side::Crm,
            Side::Crm => Side::Exchange,
        }
    }

    /// The name used in logs, stores and the API.
    pub fn name(self) -> &'static str {
        match self {
            Side::Exchange => "exchange",
            Side::Crm => "crm",
        }
    }

    /// Index into per-side arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_round_trip_through_text_and_json() {
        let id = HubContactId::mint();
        assert_eq!(id.to_string().parse::<HubContactId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<HubContactId>(&json).unwrap(), id);
        assert!("not-a-uuid".parse::<HubContactId>().is_err());
        assert_eq!(id.to_string().len(), 22);
        assert!("AAAAAAAAAAAAAAAAAAAAA!".parse::<HubContactId>().is_err());
    }

    #[test]
    fn string_ids_reject_empty_and_control_characters() {
        assert!("".parse::<UserId>().is_err());
        assert!("a\nb".parse::<ItemId>().is_err());
        assert_eq!("AAMk=".parse::<ItemId>().unwrap().as_str(), "AAMk=");
    }
}

//! The versioned envelope around every persisted value: one format byte, then the payload
//! (postcard for records, raw bytes for documents). Readers reject versions they do not
//! know instead of misreading them, so formats can migrate.

use serde::{de::DeserializeOwned, Serialize};

use crate::{Result, StoreError};

/// The format version this build writes. 2: side records remember the item a side last
/// held (`previous`). 3: a contact record carries its pending push intents (version 2 kept
/// them under a key each). Version 1 stores (pre-release builds) are refused as unknown;
/// such a store is rebuilt from the stamps both sides carry (SPEC X9).
pub const FORMAT: u8 = 3;

/// The oldest version this build reads. Versions 2 and 3 differ only in the contact record
/// ([`crate::records::ContactRecord`]), whose reader takes either ([`versioned`]); every
/// other value reads the same in both.
pub const OLDEST: u8 = 2;

/// Encode a record with the current format version.
pub fn encode<T: Serialize>(tree: &'static str, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![FORMAT];
    postcard::to_io(value, &mut out).map_err(|e| StoreError::Corrupt { tree, detail: format!("encode: {e}") })?;
    Ok(out)
}

/// Decode a record, checking its format version.
pub fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    let payload = payload(tree, bytes)?;
    postcard::from_bytes(payload).map_err(|e| StoreError::Corrupt { tree, detail: e.to_string() })
}

/// Wrap raw bytes (a document chunk) in the envelope.
pub fn wrap(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(FORMAT);
    out.extend_from_slice(bytes);
    out
}

/// The payload of an envelope, checking its version.
pub fn payload<'a>(tree: &'static str, bytes: &'a [u8]) -> Result<&'a [u8]> {
    versioned(tree, bytes).map(|(_, payload)| payload)
}

/// The version and payload of an envelope, for a reader whose payload changed between the
/// versions it reads.
pub fn versioned<'a>(tree: &'static str, bytes: &'a [u8]) -> Result<(u8, &'a [u8])> {
    match bytes.split_first() {
        Some((&version, rest)) if (OLDEST..=FORMAT).contains(&version) => Ok((version, rest)),
        Some((&version, _)) => Err(StoreError::UnknownFormat { tree, version }),
        None => Err(StoreError::Corrupt { tree, detail: "empty value".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let bytes = encode("t", &("a".to_string(), 7u32)).unwrap();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode::<(String, u32)>("t", &bytes).unwrap(), ("a".to_string(), 7));
        let mut future = bytes.clone();
        future[0] = 9;
        assert!(matches!(decode::<(String, u32)>("t", &future), Err(StoreError::UnknownFormat { version: 9, .. })));
        let mut older = bytes.clone();
        older[0] = OLDEST;
        assert_eq!(decode::<(String, u32)>("t", &older).unwrap(), ("a".to_string(), 7));
        assert_eq!(versioned("t", &older).unwrap().0, OLDEST);
        older[0] = OLDEST - 1;
        assert!(matches!(payload("t", &older), Err(StoreError::UnknownFormat { version: 1, .. })));
        assert!(matches!(payload("t", &[]), Err(StoreError::Corrupt { .. })));
        assert!(decode::<(String, u32)>("t", &[FORMAT, 0xff]).is_err());
    }
}

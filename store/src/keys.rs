//! Keys: a sequence of segments, each length-prefixed, so any opaque id is safe in a key and
//! a user's keys share a prefix (one prefix scan loads a user).

/// Build a key from segments.
pub fn key(segments: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(segments.iter().map(|s| s.len() + 2).sum());
    for s in segments {
        push(&mut out, s);
    }
    out
}

fn push(out: &mut Vec<u8>, segment: &[u8]) {
    // Ids are bounded well below 64 KiB by the hub; clamp rather than panic.
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&segment[..usize::from(len)]);
}

/// Split a key back into its segments; `None` if it is not a well-formed key.
pub fn segments(mut key: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !key.is_empty() {
        let (len, rest) = key.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let (seg, rest) = rest.split_at_checked(len)?;
        out.push(seg);
        key = rest;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_prefix_by_user() {
        let k = key(&[b"user-1", b"crm", b"hub"]);
        assert_eq!(segments(&k).unwrap(), vec![&b"user-1"[..], b"crm", b"hub"]);
        assert!(k.starts_with(&key(&[b"user-1"])));
        assert!(!key(&[b"user-10", b"x"]).starts_with(&key(&[b"user-1"])));
        assert!(segments(&[0, 5, 1]).is_none());
    }
}

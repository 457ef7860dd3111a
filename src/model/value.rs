//! Field values, their normalisation and their comparison (FIELDS.md "Rules").

use serde::{Deserialize, Serialize};

use super::{Field, FieldKind, ModelError};

/// One field's value. "Not set" is no value at all: an empty string, an empty list and
/// `false` normalise to `None` (FIELDS.md: empty and absent are the same).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldValue {
    /// Text, e-mail or date.
    Text(String),
    /// The `private` flag.
    Flag(bool),
    /// `categories`: sorted, de-duplicated.
    List(Vec<String>),
}

impl FieldValue {
    /// The value as it is stored: trailing white space trimmed, line endings `\n`,
    /// lists sorted and de-duplicated; `None` when it means "not set".
    pub fn normalise(self) -> Option<FieldValue> {
        match self {
            FieldValue::Text(s) if is_normal_text(&s) => (!s.is_empty()).then_some(FieldValue::Text(s)),
            FieldValue::Text(s) => {
                let s = normalise_text(&s);
                (!s.is_empty()).then_some(FieldValue::Text(s))
            }
            FieldValue::Flag(b) => b.then_some(FieldValue::Flag(true)),
            FieldValue::List(items) => {
                let mut items: Vec<String> =
                    items.iter().map(|i| normalise_text(i.trim_start())).filter(|i| !i.is_empty()).collect();
                items.sort();
                items.dedup();
                (!items.is_empty()).then_some(FieldValue::List(items))
            }
        }
    }

    /// The text, if this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            FieldValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Size in bytes, as checked against the field's limit.
    pub fn byte_len(&self) -> usize {
        match self {
            FieldValue::Text(s) => s.len(),
            FieldValue::Flag(_) => 1,
            FieldValue::List(items) => items.iter().map(|i| i.len() + 1).sum(),
        }
    }

    /// Check the value against what `field` accepts.
    pub fn validate(&self, field: Field) -> Result<(), ModelError> {
        let kind_ok = matches!(
            (field.kind(), self),
            (FieldKind::Text | FieldKind::Email | FieldKind::Date, FieldValue::Text(_))
                | (FieldKind::Flag, FieldValue::Flag(_))
                | (FieldKind::List, FieldValue::List(_))
        );
        if !kind_ok {
            return Err(ModelError::WrongType { field });
        }
        let len = self.byte_len();
        if len > field.max_bytes() {
            return Err(ModelError::TooLong { field, len, max: field.max_bytes() });
        }
        if let (FieldKind::Date, FieldValue::Text(s)) = (field.kind(), self) {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| ModelError::BadDate { field, value: s.clone() })?;
        }
        let has_control = |s: &str| s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
        let bad = match self {
            FieldValue::Text(s) => has_control(s),
            FieldValue::List(items) => items.iter().any(|i| has_control(i) || i.contains('\n')),
            FieldValue::Flag(_) => false,
        };
        if bad {
            return Err(ModelError::ControlCharacter { field });
        }
        Ok(())
    }
}

/// Whether `s` is already as [`normalise_text`] would leave it (no allocation needed).
fn is_normal_text(s: &str) -> bool {
    !s.contains('\r') && s.split('\n').all(|line| line.trim_end().len() == line.len()) && !s.ends_with('\n')
}

/// Trailing white space trimmed (per line end too) and `\r\n` / `\r` turned into `\n`.
fn normalise_text(s: &str) -> String {
    let unified = if s.contains('\r') { s.replace("\r\n", "\n").replace('\r', "\n") } else { s.to_string() };
    let mut out = String::with_capacity(unified.len());
    for (i, line) in unified.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line.trim_end());
    }
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    out
}

/// Whether two (normalised or not) values of `field` mean the same: compared after
/// normalisation, e-mail addresses case-insensitively.
pub fn equivalent(field: Field, a: Option<&FieldValue>, b: Option<&FieldValue>) -> bool {
    // Fast paths for values already normalised (everything a ContactFields holds).
    match (a, b) {
        (None, None) => return true,
        (Some(x), Some(y)) if x == y => return true,
        (Some(FieldValue::Text(x)), Some(FieldValue::Text(y)))
            if field.kind() == FieldKind::Email
                && x.is_ascii()
                && y.is_ascii()
                && is_normal_text(x)
                && is_normal_text(y) =>
        {
            return x.eq_ignore_ascii_case(y)
        }
        _ => {}
    }
    let a = a.cloned().and_then(FieldValue::normalise);
    let b = b.cloned().and_then(FieldValue::normalise);
    match (field.kind(), &a, &b) {
        (FieldKind::Email, Some(FieldValue::Text(x)), Some(FieldValue::Text(y))) => {
            x.to_lowercase() == y.to_lowercase()
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.to_string())
    }

    #[test]
    fn empty_false_and_empty_list_are_not_set() {
        assert_eq!(text("  \r\n ").normalise(), None);
        assert_eq!(FieldValue::Flag(false).normalise(), None);
        assert_eq!(FieldValue::List(vec![" ".into()]).normalise(), None);
    }

    #[test]
    fn trailing_white_space_and_line_endings_are_normalised() {
        assert_eq!(text("a  \r\nb\t\rc \n\n").normalise(), Some(text("a\nb\nc")));
        assert_eq!(text("  keeps leading").normalise(), Some(text("  keeps leading")));
    }

    #[test]
    fn email_compares_case_insensitively_but_keeps_case() {
        let a = text("Jane.Tarnoff@Example.com");
        assert!(equivalent(Field::Email1, Some(&a), Some(&text("jane.tarnoff@example.com "))));
        assert!(!equivalent(Field::GivenName, Some(&text("Jane")), Some(&text("jane"))));
        assert_eq!(a.clone().normalise(), Some(a));
    }

    #[test]
    fn categories_are_a_sorted_set() {
        let v = FieldValue::List(vec!["b".into(), "a ".into(), "b".into(), "".into()]);
        assert_eq!(v.normalise(), Some(FieldValue::List(vec!["a".into(), "b".into()])));
    }

    #[test]
    fn validation_names_the_field_and_the_problem() {
        let long = text(&"x".repeat(4097));
        assert_eq!(
            long.validate(Field::Company).unwrap_err().to_string(),
            "field `company` is 4097 bytes, more than its limit of 4096"
        );
        assert!(long.validate(Field::Notes).is_ok(), "notes may hold 64 KiB");
        assert!(text(&"x".repeat(65537)).validate(Field::Notes).is_err());
        assert_eq!(
            text("1990-02-30").validate(Field::Birthday).unwrap_err().to_string(),
            "field `birthday`: `1990-02-30` is not a date YYYY-MM-DD"
        );
        assert!(text("1990-02-28").validate(Field::Birthday).is_ok());
        assert!(FieldValue::Flag(true).validate(Field::Surname).is_err());
        assert!(text("a\u{0}b").validate(Field::Surname).is_err());
        assert!(text("line\nbreak").validate(Field::Notes).is_ok());
    }
}

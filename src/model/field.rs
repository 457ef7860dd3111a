//! The canonical contact fields of FIELDS.md (SPEC C9): one enum, one table.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ModelError;

/// What kind of value a field holds, which decides normalisation and validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Free text, trailing white space and line endings normalised.
    Text,
    /// An e-mail address: compared case-insensitively, written back as typed.
    Email,
    /// A date `YYYY-MM-DD`.
    Date,
    /// A flag; `false` is "not set".
    Flag,
    /// A sorted, de-duplicated list held as one register.
    List,
}

macro_rules! fields {
    ($($variant:ident = $name:literal : $kind:ident),+ $(,)?) => {
        /// A canonical field: the keys of the Automerge document and of the API's `fields`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[repr(u8)]
        pub enum Field { $($variant),+ }

        impl Field {
            /// Every field, in table order (FIELDS.md).
            pub const ALL: &'static [Field] = &[$(Field::$variant),+];

            /// The canonical (snake_case) name.
            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name),+ }
            }

            /// How the field's values are normalised and validated.
            pub fn kind(self) -> FieldKind {
                match self { $(Field::$variant => FieldKind::$kind),+ }
            }
        }

        impl FromStr for Field {
            type Err = ModelError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Field::$variant),)+
                    other => Err(ModelError::UnknownField(other.to_string())),
                }
            }
        }
    };
}

fields! {
    Title = "title": Text,
    GivenName = "given_name": Text,
    MiddleName = "middle_name": Text,
    Surname = "surname": Text,
    Suffix = "suffix": Text,
    Nickname = "nickname": Text,
    JobTitle = "job_title": Text,
    Company = "company": Text,
    Department = "department": Text,
    AssistantName = "assistant_name": Text,
    Email1 = "email1": Email,
    Email2 = "email2": Email,
    Email3 = "email3": Email,
    BusinessPhone = "business_phone": Text,
    BusinessPhone2 = "business_phone2": Text,
    HomePhone = "home_phone": Text,
    HomePhone2 = "home_phone2": Text,
    MobilePhone = "mobile_phone": Text,
    BusinessFax = "business_fax": Text,
    HomeFax = "home_fax": Text,
    OtherPhone = "other_phone": Text,
    AssistantPhone = "assistant_phone": Text,
    Pager = "pager": Text,
    BusinessStreet = "business_street": Text,
    BusinessCity = "business_city": Text,
    BusinessState = "business_state": Text,
    BusinessPostalCode = "business_postal_code": Text,
    BusinessCountry = "business_country": Text,
    HomeStreet = "home_street": Text,
    HomeCity = "home_city": Text,
    HomeState = "home_state": Text,
    HomePostalCode = "home_postal_code": Text,
    HomeCountry = "home_country": Text,
    OtherStreet = "other_street": Text,
    OtherCity = "other_city": Text,
    OtherState = "other_state": Text,
    OtherPostalCode = "other_postal_code": Text,
    OtherCountry = "other_country": Text,
    WebPage = "web_page": Text,
    Birthday = "birthday": Date,
    SpouseName = "spouse_name": Text,
    Notes = "notes": Text,
    Categories = "categories": List,
    Private = "private": Flag,
}

/// Longest value of any field but notes, in bytes (CRM_API.md limits).
pub const MAX_FIELD_BYTES: usize = 4 * 1024;
/// Longest notes value, in bytes.
pub const MAX_NOTES_BYTES: usize = 64 * 1024;

impl Field {
    /// The user's own fields (CRM list entry, SPEC C11); the rest are firm fields.
    pub fn is_list_level(self) -> bool {
        matches!(self, Field::Notes | Field::Categories | Field::Private)
    }

    /// The largest value the field accepts, in bytes (for a list: all items together).
    pub fn max_bytes(self) -> usize {
        if self == Field::Notes {
            MAX_NOTES_BYTES
        } else {
            MAX_FIELD_BYTES
        }
    }

    fn bit(self) -> u64 {
        1u64 << (self as u8)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of fields: what one side carries (SPEC C8 switches `notes` off for both sides).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldSet(u64);

impl FieldSet {
    /// Every field.
    pub fn all() -> Self {
        Field::ALL.iter().fold(FieldSet(0), |s, f| s.with(*f))
    }

    /// No field.
    pub fn empty() -> Self {
        FieldSet(0)
    }

    /// This set plus `field`.
    pub fn with(self, field: Field) -> Self {
        FieldSet(self.0 | field.bit())
    }

    /// This set less `field`.
    pub fn without(self, field: Field) -> Self {
        FieldSet(self.0 & !field.bit())
    }

    /// Whether `field` is in the set.
    pub fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    /// The fields in the set, in table order.
    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL.iter().copied().filter(move |f| self.contains(*f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_name_round_trips_and_is_unique() {
        let mut names = std::collections::BTreeSet::new();
        for f in Field::ALL {
            assert_eq!(f.name().parse::<Field>().ok(), Some(*f));
            assert!(names.insert(f.name()), "duplicate name {}", f.name());
        }
        assert_eq!(Field::ALL.len(), 44, "FIELDS.md has 44 canonical fields");
    }

    #[test]
    fn unknown_field_is_a_clear_error() {
        let err = "favourite_colour".parse::<Field>().unwrap_err();
        assert_eq!(err.to_string(), "unknown field `favourite_colour`");
    }

    #[test]
    fn field_set_without_notes_keeps_the_rest() {
        let s = FieldSet::all().without(Field::Notes);
        assert!(!s.contains(Field::Notes));
        assert_eq!(s.iter().count(), Field::ALL.len() - 1);
        assert!(FieldSet::empty().iter().next().is_none());
    }

    #[test]
    fn serde_uses_canonical_names() {
        let json = serde_json::to_string(&Field::BusinessPostalCode).unwrap();
        assert_eq!(json, "\"business_postal_code\"");
    }
}

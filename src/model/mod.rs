//! The canonical contact model: the fixed field table of FIELDS.md (SPEC C9), values and
//! their normalisation, typed ids.

mod contact;
mod field;
mod ids;
mod value;

pub use contact::ContactFields;
pub use field::{Field, FieldKind, FieldSet, MAX_FIELD_BYTES, MAX_NOTES_BYTES};
pub use ids::{HubContactId, ItemId, Side, UserId};
pub use value::{equivalent, FieldValue};

/// A value or id that the model does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A field name outside FIELDS.md.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A value of the wrong type for its field.
    #[error("field `{field}` has a value of the wrong type")]
    WrongType { field: Field },
    /// A value over the field's length limit.
    #[error("field `{field}` is {len} bytes, more than its limit of {max}")]
    TooLong { field: Field, len: usize, max: usize },
    /// A date that is not `YYYY-MM-DD`.
    #[error("field `{field}`: `{value}` is not a date YYYY-MM-DD")]
    BadDate { field: Field, value: String },
    /// A control character (other than line feed and tab in text).
    #[error("field `{field}` contains a control character")]
    ControlCharacter { field: Field },
    /// An id that is empty, too long or malformed.
    #[error("`{value}` is not a valid {kind}")]
    BadId { kind: &'static str, value: String },
}

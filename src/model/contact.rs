//! A contact as canonical fields: what the document holds and what each side's shadow holds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{equivalent, Field, FieldSet, FieldValue, ModelError};

/// A contact's set fields, normalised; absent means "not set".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContactFields(BTreeMap<Field, FieldValue>);

impl ContactFields {
    /// No field set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `field`, if set.
    pub fn get(&self, field: Field) -> Option<&FieldValue> {
        self.0.get(&field)
    }

    /// Whether the contact is marked Private (FIELDS.md `private`).
    pub fn is_private(&self) -> bool {
        matches!(self.get(Field::Private), Some(FieldValue::Flag(true)))
    }

    /// The categories (FIELDS.md `categories`; none when not set).
    pub fn categories(&self) -> Vec<String> {
        match self.get(Field::Categories) {
            Some(FieldValue::List(items)) => items.clone(),
            _ => Vec::new(),
        }
    }

    /// Set `field` to `value` after normalising it (an empty value unsets the field).
    pub fn set(&mut self, field: Field, value: Option<FieldValue>) {
        match value.and_then(FieldValue::normalise) {
            Some(v) => {
                self.0.insert(field, v);
            }
            None => {
                self.0.remove(&field);
            }
        }
    }

    /// Builder form of [`ContactFields::set`] for text fields.
    pub fn with_text(mut self, field: Field, value: &str) -> Self {
        self.set(field, Some(FieldValue::Text(value.to_string())));
        self
    }

    /// The set fields, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (Field, &FieldValue)> {
        self.0.iter().map(|(f, v)| (*f, v))
    }

    /// How many fields are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Only the fields in `set`.
    pub fn restricted(&self, set: FieldSet) -> ContactFields {
        ContactFields(self.0.iter().filter(|(f, _)| set.contains(**f)).map(|(f, v)| (*f, v.clone())).collect())
    }

    /// The fields of `set` whose values differ between `self` and `other` (FIELDS.md
    /// comparison rules).
    pub fn differing(&self, other: &ContactFields, set: FieldSet) -> Vec<Field> {
        self.fields_of_either(other, set).filter(|f| !equivalent(*f, self.get(*f), other.get(*f))).collect()
    }

    /// Whether `self` and `other` hold the same values on every field of `set`.
    pub fn equivalent_on(&self, other: &ContactFields, set: FieldSet) -> bool {
        self.fields_of_either(other, set).all(|f| equivalent(f, self.get(f), other.get(f)))
    }

    /// The fields of `set` that either side has set, in order (values absent on both are
    /// equal, so only these need comparing).
    fn fields_of_either<'a>(&'a self, other: &'a ContactFields, set: FieldSet) -> impl Iterator<Item = Field> + 'a {
        let mut a = self.0.keys().copied().peekable();
        let mut b = other.0.keys().copied().peekable();
        std::iter::from_fn(move || {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x == y => {
                    b.next();
                    a.next()
                }
                (Some(x), Some(y)) if x < y => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => None,
            };
            next
        })
        .filter(move |f| set.contains(*f))
    }

    /// Every problem with the values, each naming its field (empty when valid).
    pub fn validate(&self) -> Vec<ModelError> {
        self.0.iter().filter_map(|(f, v)| v.validate(*f).err()).collect()
    }

    /// A display name, for logs and reports: "given surname", else e-mail, else company.
    pub fn display_name(&self) -> String {
        let text = |f| self.get(f).and_then(FieldValue::as_text).unwrap_or("");
        let full = format!("{} {}", text(Field::GivenName), text(Field::Surname));
        let found = [full.trim(), text(Field::Email1), text(Field::Company)].into_iter().find(|s| !s.is_empty());
        found.unwrap_or("(no name)").to_string()
    }
}

impl FromIterator<(Field, FieldValue)> for ContactFields {
    fn from_iter<I: IntoIterator<Item = (Field, FieldValue)>>(iter: I) -> Self {
        let mut c = ContactFields::new();
        for (f, v) in iter {
            c.set(f, Some(v));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_normalises_and_unsets_empty_values() {
        let mut c = ContactFields::new().with_text(Field::GivenName, "Jane  ");
        assert_eq!(c.get(Field::GivenName), Some(&FieldValue::Text("Jane".into())));
        c.set(Field::GivenName, Some(FieldValue::Text(String::new())));
        assert!(c.is_empty());
    }

    #[test]
    fn differing_follows_the_comparison_rules_and_the_field_set() {
        let a = ContactFields::new().with_text(Field::Email1, "A@x.com").with_text(Field::Notes, "n1");
        let b = ContactFields::new().with_text(Field::Email1, "a@X.com").with_text(Field::Notes, "n2");
        assert_eq!(a.differing(&b, FieldSet::all()), vec![Field::Notes]);
        assert!(a.equivalent_on(&b, FieldSet::all().without(Field::Notes)));
    }

    #[test]
    fn display_name_falls_back_to_email_then_company() {
        let c = ContactFields::new().with_text(Field::Company, "Acme");
        assert_eq!(c.display_name(), "Acme");
        let c = c.with_text(Field::Email1, "j@acme.com");
        assert_eq!(c.display_name(), "j@acme.com");
        let c = c.with_text(Field::Surname, "Rogers");
        assert_eq!(c.display_name(), "Rogers");
    }
}

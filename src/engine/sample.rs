//! Deterministic sample contacts with realistic field fill (15–25 fields), for the demo and
//! the benches.

use crate::model::{ContactFields, Field, FieldValue};

const GIVEN: [&str; 12] =
    ["Jane", "Joe", "Priya", "Liam", "Mei", "Carlos", "Aisha", "Tom", "Sofia", "Ken", "Olga", "Ravi"];
const SURNAMES: [&str; 12] =
    ["Tarnoff", "Smith", "Rogers", "Okafor", "Chen", "Garcia", "Haddad", "Novak", "Rossi", "Sato", "Ivanova", "Patel"];
const COMPANIES: [&str; 8] = [
    "Acme Holdings",
    "Birch & Co LLP",
    "Cobalt Capital",
    "Delta Freight",
    "Evergreen Bank",
    "Fjord Energy",
    "Granite Re",
    "Helix Pharma",
];
const CITIES: [&str; 6] = ["London", "New York", "Chicago", "Toronto", "Sydney", "Frankfurt"];

/// Contact number `i`: always names, company, job title, e-mail, phones and a business
/// address; some home and other data depending on `i`, for 15 to 25 fields in all.
pub fn contact(i: usize) -> ContactFields {
    let g = GIVEN[i % GIVEN.len()];
    let s = SURNAMES[(i / GIVEN.len()) % SURNAMES.len()];
    let company = COMPANIES[i % COMPANIES.len()];
    let city = CITIES[i % CITIES.len()];
    let domain = company.split_whitespace().next().unwrap_or("example").to_lowercase();
    let mut c = ContactFields::new()
        .with_text(Field::GivenName, g)
        .with_text(Field::Surname, &format!("{s}-{i}"))
        .with_text(Field::Company, company)
        .with_text(Field::Department, "Legal")
        .with_text(Field::JobTitle, "Partner")
        .with_text(Field::Email1, &format!("{}.{}{i}@{domain}.com", g.to_lowercase(), s.to_lowercase()))
        .with_text(Field::BusinessPhone, &format!("+1 212 555 {:04}", i % 10_000))
        .with_text(Field::MobilePhone, &format!("+1 917 555 {:04}", (i * 7) % 10_000))
        .with_text(Field::BusinessStreet, &format!("{} Main Street", 1 + i % 400))
        .with_text(Field::BusinessCity, city)
        .with_text(Field::BusinessState, "NY")
        .with_text(Field::BusinessPostalCode, &format!("{:05}", 10_000 + i % 89_999))
        .with_text(Field::BusinessCountry, "United States")
        .with_text(Field::WebPage, &format!("https://www.{domain}.com"))
        .with_text(Field::AssistantName, GIVEN[(i + 3) % GIVEN.len()]);
    c.set(Field::Categories, Some(FieldValue::List(vec!["Clients".into()])));
    let extra = i % 11;
    let optional: [(Field, String); 10] = [
        (Field::Title, "Ms.".into()),
        (Field::MiddleName, "A.".into()),
        (Field::Email2, format!("{}{i}@home.example", g.to_lowercase())),
        (Field::HomePhone, format!("+1 718 555 {:04}", (i * 3) % 10_000)),
        (Field::HomeStreet, format!("{} Elm Road", 1 + i % 90)),
        (Field::HomeCity, city.to_string()),
        (Field::Birthday, format!("19{:02}-{:02}-{:02}", 50 + i % 50, 1 + i % 12, 1 + i % 28)),
        (Field::SpouseName, GIVEN[(i + 5) % GIVEN.len()].to_string()),
        (Field::BusinessFax, format!("+1 212 555 {:04}", (i + 1) % 10_000)),
        (Field::Notes, format!("Met at the {} conference.", 2000 + i % 25)),
    ];
    for (f, v) in optional.into_iter().take(extra) {
        c = c.with_text(f, &v);
    }
    c
}

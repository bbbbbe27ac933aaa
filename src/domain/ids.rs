//! Record ids that know whose they are: `LocalId` is a row's key in this service's
//! database, `AmoId` the id AmoCRM gave the record. Both are `i64` underneath; where
//! a signature takes one of each, the types keep them from being swapped.

use std::fmt;

/// A row's primary key in the mirror (`contacts.id`, `leads.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalId(i64);

/// The id AmoCRM gave a record (`amocrm_id` in the mirror).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AmoId(i64);

macro_rules! id {
    ($id:ident) => {
        impl $id {
            pub const fn new(raw: i64) -> Self {
                $id(raw)
            }

            /// The number as the database and AmoCRM's API spell it.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $id {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(LocalId);
id!(AmoId);

#[cfg(test)]
mod tests {
    use super::{AmoId, LocalId};

    #[test]
    fn an_id_keeps_its_number_and_shows_it_plainly() {
        for raw in [1, 42, i64::MAX] {
            assert_eq!(LocalId::new(raw).get(), raw);
            assert_eq!(AmoId::new(raw).get(), raw);
            assert_eq!(LocalId::new(raw).to_string(), raw.to_string());
            assert_eq!(AmoId::new(raw).to_string(), raw.to_string());
        }
        assert_ne!(LocalId::new(1), LocalId::new(2));
        assert!(AmoId::new(1) < AmoId::new(2));
    }
}

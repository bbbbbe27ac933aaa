//! The cause behind an infrastructure error, kept whole instead of flattened to a
//! string, so the one log line a 5xx gets can show the whole chain. It is `Clone`
//! (an `Arc`), because one failure may answer many callers (a batch's fan-out, a
//! shared flight).

use std::error::Error;
use std::fmt;
use std::sync::Arc;

#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync + 'static>);

impl Cause {
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(error))
    }
}

/// A cause that is only a description (context the code adds, not a library error).
#[derive(Debug)]
struct Described(String);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Described {}

impl From<String> for Cause {
    fn from(description: String) -> Self {
        Cause::new(Described(description))
    }
}

impl From<&str> for Cause {
    fn from(description: &str) -> Self {
        Cause::from(description.to_owned())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Transparent: the wrapped error's own causes follow it.
impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// The error and every cause under it, `: `-separated. A cause whose text its
/// parent already ends with (`"query failed: {0}"` over that same error) is not
/// repeated.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !text.ends_with(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("query failed: {0}")]
        Query(#[source] Cause),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn the_chain_shows_every_cause_once() {
        let io = std::io::Error::other("peer hung up");
        let error = Outer::Query(Cause::new(Inner(io)));
        assert_eq!(
            chain(&error),
            "query failed: connection reset: peer hung up"
        );
    }

    #[test]
    fn a_clone_keeps_the_cause() {
        let cause = Cause::new(Inner(std::io::Error::other("peer hung up")));
        let copy = cause.clone();
        assert_eq!(chain(&copy), "connection reset: peer hung up");
        assert_eq!(Cause::from("no such row").to_string(), "no such row");
    }
}

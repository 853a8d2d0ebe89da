//! The config contract (see README.md): [`Config::problems`] names every
//! wrong key at once, [`Config::build`] turns a config without problems into
//! what it configures.

use std::fmt;

pub mod ready;
pub mod version;

/// One thing wrong with a config: the key (a dotted path as the user writes
/// it, `gallery.match_threshold` or `cameras[2].source`; empty for the
/// config as a whole) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl Problem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }

    /// This problem of a table found at `prefix`: `gallery` and
    /// `match_threshold` give `gallery.match_threshold`; an index (`[2]`)
    /// joins without a dot.
    pub fn under(mut self, prefix: &str) -> Problem {
        self.key = join(prefix, &self.key);
        self
    }
}

/// `prefix` and `key` joined as a dotted path.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else if key.is_empty() {
        prefix.to_owned()
    } else if key.starts_with('[') {
        format!("{prefix}{key}")
    } else {
        format!("{prefix}.{key}")
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// A config with problems, as an error: every problem, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// What is wrong; never empty.
    pub problems: Vec<Problem>,
}

impl Invalid {
    /// The keys named, in order (tests and callers that react to one key).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.problems.iter().map(|p| p.key.as_str())
    }

    /// The same problems, found in a table at `prefix`.
    pub fn under(self, prefix: &str) -> Invalid {
        Invalid {
            problems: self.problems.into_iter().map(|p| p.under(prefix)).collect(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, p) in self.problems.iter().enumerate() {
            if k > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Problems as a `Result`: `Ok` when there are none.
pub fn result(problems: Vec<Problem>) -> Result<(), Invalid> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid { problems })
    }
}

/// The contract of every config type.
pub trait Config {
    /// What a config without problems builds.
    type Output;
    /// What building needs from outside the config (a session factory, a
    /// path, a model tag); `()` when nothing.
    type Context: ?Sized;
    /// What building fails with: the config's own problems, or the world's
    /// (a missing model, a locked file).
    type Error: From<Invalid>;

    /// Everything wrong with this config, each naming its key relative to
    /// this table. Pure: no file, model or socket is opened.
    fn problems(&self) -> Vec<Problem>;

    /// `Ok` when [`problems`](Config::problems) finds none.
    fn check(&self) -> Result<(), Invalid> {
        result(self.problems())
    }

    /// Builds what this config configures. Refuses a config with problems:
    /// implementations start with `self.check()?`.
    fn build(&self, ctx: &Self::Context) -> Result<Self::Output, Self::Error>;
}

/// Collects problems while a config is checked.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    /// None yet.
    pub fn new() -> Problems {
        Problems::default()
    }

    /// `key` is wrong: `message`.
    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    /// `key` must lie in `lo..=hi` (and be a number).
    pub fn within(&mut self, key: &str, value: f32, lo: f32, hi: f32) {
        if !(lo..=hi).contains(&value) {
            self.push(key, format!("must be in {lo}..={hi}, got {value}"));
        }
    }

    /// The problems of a nested table at `prefix`.
    pub fn nested(&mut self, prefix: &str, problems: Vec<Problem>) {
        self.0.extend(problems.into_iter().map(|p| p.under(prefix)));
    }

    /// Adds problems found elsewhere, keys as they are.
    pub fn extend(&mut self, problems: impl IntoIterator<Item = Problem>) {
        self.0.extend(problems);
    }

    /// True when nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Inner {
        rate: f32,
    }

    impl Config for Inner {
        type Output = f32;
        type Context = ();
        type Error = Invalid;
        fn problems(&self) -> Vec<Problem> {
            let mut p = Problems::new();
            p.within("rate", self.rate, 0.0, 1.0);
            p.into_vec()
        }
        fn build(&self, _: &()) -> Result<f32, Invalid> {
            self.check()?;
            Ok(self.rate * 2.0)
        }
    }

    struct Outer {
        inner: Vec<Inner>,
        name: String,
    }

    impl Config for Outer {
        type Output = Vec<f32>;
        type Context = ();
        type Error = Invalid;
        fn problems(&self) -> Vec<Problem> {
            let mut p = Problems::new();
            if self.name.is_empty() {
                p.push("name", "must not be empty");
            }
            for (i, c) in self.inner.iter().enumerate() {
                p.nested(&format!("inner[{i}]"), c.problems());
            }
            p.into_vec()
        }
        fn build(&self, ctx: &()) -> Result<Vec<f32>, Invalid> {
            self.check()?;
            self.inner.iter().map(|c| c.build(ctx)).collect()
        }
    }

    #[test]
    fn nested_problems_name_full_paths_all_at_once() {
        let o = Outer {
            inner: vec![
                Inner { rate: 0.5 },
                Inner { rate: 3.0 },
                Inner { rate: -1.0 },
            ],
            name: String::new(),
        };
        let err = o.build(&()).expect_err("invalid");
        let keys: Vec<&str> = err.keys().collect();
        assert_eq!(keys, ["name", "inner[1].rate", "inner[2].rate"]);
        let text = err.to_string();
        assert!(
            text.contains("inner[1].rate: must be in 0..=1, got 3"),
            "{text}"
        );
    }

    #[test]
    fn a_config_without_problems_builds() {
        let o = Outer {
            inner: vec![Inner { rate: 0.25 }],
            name: "x".into(),
        };
        assert_eq!(o.build(&()), Ok(vec![0.5]));
        assert!(o.check().is_ok());
    }

    #[test]
    fn keys_join_as_written() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a", ""), "a");
        assert_eq!(join("a", "b"), "a.b");
        assert_eq!(join("a", "[1].b"), "a[1].b");
        assert_eq!(Problem::new("", "whole").to_string(), "whole");
        assert_eq!(Problem::new("k", "bad").under("t").to_string(), "t.k: bad");
    }

    #[test]
    fn not_a_number_is_out_of_every_range() {
        let mut p = Problems::new();
        p.within("x", f32::NAN, 0.0, 1.0);
        assert_eq!(p.into_vec().len(), 1);
    }
}

//! A transaction's conditions, replayed step by step: each step is judged
//! against what its key holds when it runs, which for a key an earlier step
//! touched is what that step left. One rule for every backend.

use crate::{ETag, Error, Op, PutMode, Result};

/// What a key holds when a step of a transaction runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    /// No value.
    Absent,
    /// A value with this ETag.
    Tag(String),
    /// A value an earlier step wrote: its ETag is one no caller holds yet.
    Written,
    /// Not known here: the server judges the condition when it applies the
    /// transaction.
    Unjudged,
}

/// Checks each step of `ops` against what its key holds then: `stored`
/// (given the step's index and key) for the first step on a key, what the
/// step before left for the others. Fails with the first conflict, naming
/// its key.
pub fn check_steps(ops: &[Op], mut stored: impl FnMut(usize, &str) -> Holds) -> Result<()> {
    let mut left: std::collections::HashMap<&str, Holds> = Default::default();
    for (i, op) in ops.iter().enumerate() {
        let key = op.key();
        let holds = left.remove(key).unwrap_or_else(|| stored(i, key));
        let matches = |tag: &ETag| match &holds {
            Holds::Tag(t) => t == tag.as_str(),
            Holds::Unjudged => true,
            Holds::Absent | Holds::Written => false,
        };
        let after = match op {
            Op::Put { options, .. } => {
                match &options.mode {
                    PutMode::Create if matches!(holds, Holds::Tag(_) | Holds::Written) => {
                        return Err(Error::already_exists(key));
                    }
                    PutMode::Update(tag) if !matches(tag) => return Err(Error::etag_mismatch(key)),
                    _ => {}
                }
                Holds::Written
            }
            Op::Remove { etag: Some(tag), .. } if !matches(tag) => return Err(Error::etag_mismatch(key)),
            Op::Remove { .. } => Holds::Absent,
        };
        left.insert(key, after);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Json, PutOptions};

    fn key_of(result: Result<()>) -> Option<String> {
        let err = result.err()?;
        assert_eq!(err.kind(), ErrorKind::Conflict);
        err.key().map(str::to_string)
    }

    #[test]
    fn each_step_sees_what_the_earlier_ones_left() {
        let v = || Json::from(serde_json::json!(1));
        let tag = |t: &str| ETag::new(t);
        let stored = |_, k: &str| if k == "a" { Holds::Tag("1".into()) } else { Holds::Absent };
        let ok = vec![
            Op::put_with("a", v(), PutOptions::update(tag("1"))),
            Op::remove("a"),
            Op::put_with("a", v(), PutOptions::create()),
            Op::put_with("b", v(), PutOptions::create()),
        ];
        assert_eq!(key_of(check_steps(&ok, stored)), None);
        let cases = [
            (vec![Op::put_with("a", v(), PutOptions::update(tag("2")))], "a"),
            (vec![Op::put_with("a", v(), PutOptions::create())], "a"),
            (vec![Op::remove_if("b", tag("1"))], "b"),
            // The tag a step leaves is one no caller holds.
            (vec![Op::put("b", v()), Op::put_with("b", v(), PutOptions::update(tag("1")))], "b"),
            (vec![Op::put("b", v()), Op::put_with("b", v(), PutOptions::create())], "b"),
            (vec![Op::remove("a"), Op::remove_if("a", tag("1"))], "a"),
        ];
        for (ops, key) in cases {
            assert_eq!(key_of(check_steps(&ops, stored)).as_deref(), Some(key), "{ops:?}");
        }
        // Unjudged first steps pass; later steps on the key are still judged.
        let unjudged = |_, _: &str| Holds::Unjudged;
        assert_eq!(key_of(check_steps(&[Op::remove_if("a", tag("9"))], unjudged)), None);
        let ops =
            [Op::put_with("a", v(), PutOptions::create()), Op::put_with("a", v(), PutOptions::create())];
        assert_eq!(key_of(check_steps(&ops, unjudged)).as_deref(), Some("a"));
    }
}

//! `list_keys`: `SCAN MATCH` with the prefix's glob characters escaped (on
//! every primary in Cluster); version keys are never listed.

use fred::types::Key;
use futures_util::TryStreamExt;
use purista_core::Result;

use crate::{RedisStateStore, etag};

pub(crate) async fn list_keys(store: &RedisStateStore, prefix: &str) -> Result<Vec<String>> {
    let pattern = format!("{}*", escape_glob(prefix));
    let client = store.pool().next();
    let keys: Vec<Key> = if store.is_cluster() {
        client.scan_cluster_buffered(pattern, Some(1000), None).try_collect().await
    } else {
        client.scan_buffered(pattern, Some(1000), None).try_collect().await
    }
    .map_err(|e| store.err(e, "SCAN"))?;
    Ok(keys.into_iter().filter_map(|k| k.into_string()).filter(|k| !etag::is_version_key(k)).collect())
}

/// Escapes the glob characters of `SCAN MATCH` / `PSUBSCRIBE` patterns.
pub(crate) fn escape_glob(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_escaping() {
        assert_eq!(escape_glob("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f");
        assert_eq!(escape_glob("session:"), "session:");
    }
}

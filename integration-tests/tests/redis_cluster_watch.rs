//! Watch on a real Redis Cluster whose topology changes under it: a new
//! primary joins and takes over the slot of the watched keys (moved with
//! `MIGRATE`). The watcher must follow it (or say what it cannot see) and
//! converge.

mod support_redis;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use integration_tests::fixtures::{
    RedisServer,
    redis_topology::{Cluster, cli},
};
use purista_core::{StateStore, WatchKind, WatchStream, testkit::unique};
use purista_redis_state_store::fred::util::redis_keyslot;

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The port of the node owning `slot`, from `CLUSTER NODES` on `port`.
fn owner(port: u16, slot: u16) -> (u16, String) {
    let nodes = cli(port, &["CLUSTER", "NODES"]);
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let owns = fields.iter().skip(8).any(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        });
        if owns {
            let addr = fields[1].split('@').next().unwrap();
            let port = addr.rsplit(':').next().unwrap().parse().unwrap();
            return (port, fields[0].to_owned());
        }
    }
    panic!("no owner of slot {slot} in {nodes}");
}

/// Moves `slot` from its owner to the node on `to`, keys included.
fn move_slot(ports: &[u16], slot: u16, to: u16) {
    let (from, from_id) = owner(ports[0], slot);
    let to_id = cli(to, &["CLUSTER", "MYID"]).trim().to_owned();
    let s = slot.to_string();
    assert!(cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]).contains("OK"));
    assert!(cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]).contains("OK"));
    let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, "1000"]);
    let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
    if !keys.is_empty() {
        let port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys);
        let out = cli(from, &args);
        assert!(out.contains("OK"), "MIGRATE: {out}");
    }
    for &port in ports.iter().chain([&to]) {
        assert!(cli(port, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]).contains("OK"));
    }
}

/// The consumer's view of the keys, kept across [`converge`] calls.
type Model = HashMap<String, Option<String>>;

/// Follows `events` as a careful consumer: events update its model, an error
/// means reading the keys afresh. Returns once the model equals the store
/// and the stream was quiet for 700 ms; panics after 30 s.
async fn converge(
    store: &dyn StateStore,
    events: &mut WatchStream,
    keys: &[String],
    model: &mut Model,
) -> usize {
    let names: Vec<&str> = keys.iter().map(String::as_str).collect();
    let read = async || -> Model {
        let map = store.get_state(&names).await.expect("get_state");
        map.into_iter().map(|(k, v)| (k, v.map(|j| j.as_str().unwrap().to_owned()))).collect()
    };
    let want = read().await;
    let (mut errors, mut quiet) = (0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_millis(100), events.next()).await {
            Ok(Some(Ok(e))) => {
                quiet = Instant::now();
                let value = match e.kind {
                    WatchKind::Set { value, .. } => Some(value.as_str().unwrap().to_owned()),
                    _ => None,
                };
                model.insert(e.key, value);
            }
            Ok(Some(Err(e))) => {
                eprintln!("[purista-test] watcher error (reading afresh): {e}");
                errors += 1;
                quiet = Instant::now();
                *model = read().await;
            }
            Ok(None) => panic!("the watch stream ended"),
            Err(_) if *model == want && quiet.elapsed() >= Duration::from_millis(700) => return errors,
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "no convergence within 30 s ({errors} errors): model {model:?}, store {want:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_follows_a_new_primary() {
    let Some(cluster) = Cluster::start().await else { return };
    let store = support_redis::builder(&cluster.url()).connect().await.expect("connect to the cluster");
    let tag = unique("moving");
    let keys: Vec<String> = (0..10).map(|i| format!("{{{tag}}}:{i}")).collect();
    let slot = redis_keyslot(keys[0].as_bytes());
    let mut events = store.watch(&format!("{{{tag}}}:")).await.unwrap();
    for (i, k) in keys.iter().enumerate().take(5) {
        store.set(k, &i).await.unwrap();
    }
    let mut model: Model = keys.iter().map(|k| (k.clone(), None)).collect();
    converge(&store, &mut events, &keys, &mut model).await;

    // A fourth node joins and takes the slot over, with its keys.
    let extra = RedisServer::new("extra").cluster().within(cluster.dir()).launch().await;
    let extra = extra.expect("a fourth cluster-enabled redis-server");
    let port = extra.port();
    assert!(cli(cluster.ports[0], &["CLUSTER", "MEET", "127.0.0.1", &port.to_string()]).contains("OK"));
    wait("the new node knowing the cluster", || {
        let info = cli(port, &["CLUSTER", "INFO"]);
        info.contains("cluster_known_nodes:4") && info.contains("cluster_state:ok")
    });
    move_slot(&cluster.ports, slot, port);
    assert_eq!(owner(cluster.ports[0], slot).0, port, "the slot moved");

    // Writes now land on the new primary: the watcher must see them. The
    // store still has the old slot map: `MOVED` to a node it did not know.
    for round in 0..3 {
        for (i, k) in keys.iter().enumerate() {
            if (i + round) % 4 == 3 {
                store.remove_state(k).await.unwrap();
            } else {
                store.set(k, &(round * 100 + i)).await.unwrap();
            }
        }
        let errors = converge(&store, &mut events, &keys, &mut model).await;
        eprintln!("[purista-test] round {round}: converged after {errors} error(s)");
    }
    // A plain foreign write on the new primary is seen too.
    let out = cli(port, &["SET", &keys[0], "\"foreign\""]);
    assert!(out.contains("OK"), "{out}");
    converge(&store, &mut events, &keys, &mut model).await;
    store.destroy().await.unwrap();
    eprintln!("cluster logs in {}", cluster.dir().display());
}

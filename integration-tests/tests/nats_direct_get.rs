//! The batched direct get against a scripted responder that speaks the raw
//! NATS protocol: odd, slow or missing answers are bounded and typed.

mod support_nats;

use std::time::{Duration, Instant};

use purista_core::{ErrorKind, Json};
use support_nats::{builder, raw, url};

/// One answer frame of the fake responder: header block (status line
/// included) and payload.
type Frame = (Option<String>, String);

/// A direct-get responder that answers from a script, speaking the raw NATS
/// protocol (async-nats cannot send status lines): each request takes the next
/// list of frames. Returns the request bodies it saw.
async fn scripted_direct_get(
    url: &str,
    subject: &str,
    script: Vec<Vec<Frame>>,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let addr = url.trim_start_matches("nats://");
    let (read, mut write) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap(); // INFO
    let hello = format!(
        "CONNECT {{\"verbose\":false,\"headers\":true,\"protocol\":1}}\r\nSUB {subject} 1\r\nPING\r\n"
    );
    write.write_all(hello.as_bytes()).await.unwrap();
    while line.trim() != "PONG" {
        line.clear();
        assert!(read.read_line(&mut line).await.unwrap() > 0, "fake responder: connection closed");
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let requests = seen.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            line.clear();
            if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let parts: Vec<String> = line.split_whitespace().map(String::from).collect();
            let (reply, len) = match parts.first().map(String::as_str) {
                Some("PING") => {
                    write.write_all(b"PONG\r\n").await.unwrap();
                    continue;
                }
                // MSG <subject> <sid> <reply> <len>, HMSG ... <header len> <total len>
                Some("MSG" | "HMSG") if parts.len() >= 5 => {
                    (parts[3].clone(), parts.last().unwrap().parse().unwrap())
                }
                _ => continue,
            };
            let mut body = vec![0; len + 2];
            read.read_exact(&mut body).await.unwrap();
            requests.lock().unwrap().push(String::from_utf8_lossy(&body[..len]).into_owned());
            for (headers, payload) in script.next().unwrap_or_default() {
                let frame = match headers {
                    Some(h) => {
                        format!("HPUB {reply} {} {}\r\n{h}{payload}\r\n", h.len(), h.len() + payload.len())
                    }
                    None => format!("PUB {reply} {}\r\n{payload}\r\n", payload.len()),
                };
                write.write_all(frame.as_bytes()).await.unwrap();
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_get_is_bounded_and_typed_on_odd_answers() {
    let Some(url) = url().await else { return };
    let options = async_nats::ConnectOptions::new().request_timeout(Some(Duration::from_millis(500)));
    let store = builder(&url, "odd").connect_options(options).connect().await.unwrap();
    assert!(format!("{store:?}").contains("batched_get: true"), "{store:?}");
    let name = store.bucket().to_owned();
    // The server stops answering direct gets; the store still sends them.
    let js = raw(&url).await;
    let stream = js.get_stream(format!("KV_{name}")).await.unwrap();
    let mut config = stream.cached_info().config.clone();
    config.allow_direct = false;
    js.update_stream(&config).await.unwrap();
    let err = store.get_state(&["k1"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "no responders: {err}");

    let data = |key: &str, extra: &str, payload: &str| -> Frame {
        let h = format!(
            "NATS/1.0\r\nNats-Stream: KV_{name}\r\nNats-Subject: $KV.{name}.{key}\r\nNats-Sequence: 7\r\n\
             Nats-Time-Stamp: 2025-01-01T00:00:00Z\r\n{extra}\r\n"
        );
        (Some(h), payload.to_owned())
    };
    let status = |line: &str, headers: &str| -> Frame {
        (Some(format!("NATS/1.0 {line}\r\n{headers}\r\n")), String::new())
    };
    let eob = |pending: u32| status("204 EOB", &format!("Nats-Num-Pending: {pending}\r\n"));
    let script = vec![
        vec![],                             // silence
        vec![data("k1", "", "1")],          // stops half way
        vec![(None, "garbage".to_owned())], // no headers at all
        // An unreadable time stamp.
        vec![(
            Some("NATS/1.0\r\nNats-Subject: x\r\nNats-Sequence: 1\r\nNats-Time-Stamp: soon\r\n\r\n".into()),
            "1".into(),
        )],
        vec![status("413 Too Many Results", "")],
        vec![status("204 EOB", "")],       // no Nats-Num-Pending
        vec![eob(3)],                      // cut, but nothing sent
        vec![data("k1", "", "1"), eob(1)], // cut after k1 ...
        vec![data("k2", "", "2"), eob(0)], // ... the rest asked again
        vec![status("404 No Results", "")],
        vec![data("other", "", "9"), data("k1", "KV-Operation: DEL\r\n", ""), eob(0)],
    ];
    let requests = scripted_direct_get(&url, &format!("$JS.API.DIRECT.GET.KV_{name}"), script).await;

    let kind = |r: purista_core::Result<purista_core::StateMap>| {
        let err = r.map(drop).unwrap_err();
        eprintln!("{err}");
        err.kind()
    };
    for want in [ErrorKind::Timeout, ErrorKind::Timeout] {
        let started = Instant::now();
        assert_eq!(kind(store.get_state(&["k1", "k2"]).await), want);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by the request timeout: {:?}",
            started.elapsed()
        );
    }
    for _ in 0..5 {
        assert_eq!(kind(store.get_state(&["k1", "k2"]).await), ErrorKind::Backend);
    }
    let state = store.get_state(&["k1", "k2"]).await.unwrap();
    assert_eq!(state["k1"], Some(Json::encode(&1).unwrap()));
    assert_eq!(state["k2"], Some(Json::encode(&2).unwrap()));
    let second = requests.lock().unwrap()[8].clone();
    assert!(
        second.contains(&format!("$KV.{name}.k2")) && !second.contains(&format!("$KV.{name}.k1\"")),
        "{second}"
    );
    assert_eq!(store.get_state(&["k1"]).await.unwrap()["k1"], None, "404: no results");
    let state = store.get_state(&["k1"]).await.unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!(state["k1"], None, "a delete marker; the unasked key is ignored");
}

//! The main job: a service on the default in-memory store running the state
//! patterns of PURISTA's handbook: a session with a TTL read through a near
//! cache, a counter updated safely by many concurrent requests, a rate limit,
//! and job status.
//!
//! Run it with `cargo run -p purista-core --example service`.
//! Switching to Redis, NATS or Dapr changes only the `backend` line.

use std::{sync::Arc, time::Duration};

use purista_core::{
    CacheOptions, CachedStore, DefaultStateStore, RateLimit, Service, StateStore, StateStoreExt,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Session {
    user_id: String,
    cart: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Job {
    Processing { worker: String },
    Done { items: u32 },
}

/// Five searches per user and minute, counted across every instance.
const SEARCH_LIMIT: RateLimit = RateLimit::fixed_window(5, Duration::from_secs(60));

fn service(states: Arc<CachedStore>) -> Service {
    Service::builder("shop", "1")
        .shared_state_store(states)
        .command("login", |ctx, user_id: String| async move {
            let key = format!("session:{user_id}");
            let session = Session { user_id, cart: vec![] };
            // Sessions end by themselves: no cleanup job.
            ctx.states.set_with_ttl(&key, &session, Duration::from_secs(30 * 60)).await?;
            Ok(key)
        })
        .command("cart", |ctx, user_id: String| async move {
            // Read on every request: answered from this instance's memory
            // after the first, and dropped there when any instance writes it.
            let session = ctx.states.get::<Session>(&format!("session:{user_id}")).await?;
            Ok(session.map(|s| s.cart).unwrap_or_default())
        })
        .command("view", |ctx, page: String| async move {
            // Many instances may count at once: an atomic increment, never a lost update.
            let views = ctx.states.increment(&format!("views:{page}"), 1, None).await?;
            Ok(views)
        })
        .command("search", |ctx, user_id: String| async move {
            // Over the limit, a 429 saying how long to wait.
            let key = format!("rateLimit:{user_id}:search");
            let quota = SEARCH_LIMIT.check(&*ctx.states, &key).await?.into_result()?;
            Ok(format!("results for {user_id} ({}/{} left this minute)", quota.remaining(), quota.limit()))
        })
        .command("run-job", |ctx, job_id: String| async move {
            let key = format!("job:{job_id}");
            ctx.states.set(&key, &Job::Processing { worker: ctx.service.name.clone() }).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            ctx.states.set(&key, &Job::Done { items: 3 }).await?;
            Ok(())
        })
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    // The one line that changes per backend, e.g.
    // `Arc::new(RedisStateStore::connect("redis://127.0.0.1:6379").await?)`.
    let backend: Arc<dyn StateStore> = Arc::new(DefaultStateStore::new());
    // Counters, compare-and-swap and transactions always go to the backend;
    // plain reads are cached, kept coherent by the backend's change feed.
    let states = CachedStore::new(backend, CacheOptions::default()).await?;
    let shop = service(states.clone());

    let key: String = shop.invoke("login", "user-456").await?;
    let session = shop.states().get_versioned::<Session>(&key).await?.expect("session stored");
    let left = session.expires_at.expect("ttl").duration_since(std::time::SystemTime::now())?;
    println!("session  {key}: {:?}, expires in {}s", session.value, left.as_secs());
    for _ in 0..100 {
        let cart: Vec<String> = shop.invoke("cart", "user-456").await?;
        assert!(cart.is_empty());
    }
    let cache = states.metrics();
    println!("cache    100 session reads: {} from memory, {} from the store", cache.hits, cache.misses);

    // 200 concurrent page views on 2 cores: the counter must end at exactly 200.
    let views = futures_util::future::join_all((0..200).map(|_| shop.invoke::<_, i64>("view", "home"))).await;
    let failed = views.iter().filter(|v| v.is_err()).count();
    let total = shop.states().get::<u64>("views:home").await?.unwrap_or(0);
    println!("counter  views:home = {total} after 200 concurrent views ({failed} failed)");
    assert_eq!(total, 200);

    for _ in 0..=SEARCH_LIMIT.limit() {
        match shop.invoke::<_, String>("search", "user-456").await {
            Ok(answer) => println!("search   {answer}"),
            Err(e) => println!("search   refused: {e}"),
        }
    }

    let _: () = shop.invoke("run-job", "job-1").await?;
    let job = shop.states().get::<Job>("job:job-1").await?;
    println!("job      job-1: {job:?}");
    assert_eq!(job, Some(Job::Done { items: 3 }));

    shop.destroy().await?;
    states.destroy().await?;
    Ok(())
}

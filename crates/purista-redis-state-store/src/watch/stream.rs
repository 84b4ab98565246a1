//! Handing a node's events to the consumer, in order, as it takes them; a
//! consumer too far behind loses what is held and is told so.

use std::{future::Future, pin::Pin};

use futures_util::{StreamExt, stream::FuturesOrdered};
use purista_core::{Error, Result, WatchEvent};
use tokio::sync::mpsc;

/// Events handed to a slow consumer before its watcher holds them back.
pub(super) const CHANNEL: usize = 256;
/// Events a watcher holds for a slow consumer before it drops them and says so.
const HELD: usize = 4096;

/// An event in the making: known at once, or read from the server first
/// (`None`: nothing to report after all).
pub(super) type Pending = Pin<Box<dyn Future<Output = Option<Result<WatchEvent>>> + Send>>;

/// A node's events on their way to the consumer.
pub(super) struct Outbox {
    tx: mpsc::Sender<Result<WatchEvent>>,
    /// Events in notification order (reads run concurrently).
    out: FuturesOrdered<Pending>,
    /// The next event to hand over, once the consumer has room.
    head: Option<Result<WatchEvent>>,
}

impl Outbox {
    pub(super) fn new(tx: mpsc::Sender<Result<WatchEvent>>) -> Self {
        Outbox { tx, out: FuturesOrdered::new(), head: None }
    }

    /// Queues an event known now.
    pub(super) fn push(&mut self, event: Result<WatchEvent>) {
        self.out.push_back(Box::pin(std::future::ready(Some(event))));
    }

    /// Queues an event still to be read.
    pub(super) fn push_pending(&mut self, event: Pending) {
        self.out.push_back(event);
    }

    /// Whether [`advance`](Outbox::advance) has anything to do.
    pub(super) fn busy(&self) -> bool {
        self.head.is_some() || !self.out.is_empty()
    }

    /// Readies the next event, or hands it over once the consumer has
    /// room; false once the consumer is gone. Cancel-safe: an event is
    /// taken only with a permit to send it.
    pub(super) async fn advance(&mut self) -> bool {
        if self.head.is_none() {
            self.head = self.out.next().await.flatten();
            return true;
        }
        match (self.tx.reserve().await, self.head.take()) {
            (Ok(permit), Some(event)) => {
                permit.send(event);
                true
            }
            _ => false,
        }
    }

    /// When the consumer is too far behind: drops what is held, queues the
    /// error saying so, and answers true (the caller starts clean too).
    pub(super) fn overflowed(&mut self) -> bool {
        if self.out.len() <= HELD {
            return false;
        }
        let n = self.out.len() as u64 + u64::from(self.head.is_some());
        self.out = FuturesOrdered::new();
        self.head = None;
        self.push(Err(Error::watch_lagged(n)));
        true
    }
}

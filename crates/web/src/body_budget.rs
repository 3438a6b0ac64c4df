//! A bound on the memory that request bodies read ahead of the handlers can hold.
//!
//! [`crate::middleware::buffer_body`] reads every body (up to 64 KiB) before the rest of the
//! stack runs. Without a bound, one client could hold many bodies half-sent at once — HTTP/2
//! multiplexes many streams on a connection — and so pin hundreds of megabytes until the request
//! timeout. Each body therefore reserves its declared size (or the 64 KiB limit when it declares
//! none) from a budget for the whole server and from a smaller one for its client address (an
//! IPv6 /64, the `X-Forwarded-For` client behind `TRUSTED_PROXIES`) before it is read, and gives
//! it back when its request is answered. A body that does not fit is refused at once with `503`
//! and `Retry-After`, so one address can neither exhaust the memory nor the others' share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of request bodies held at once by the whole server.
pub const TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// Bytes of request bodies held at once for one client address.
pub const PER_CLIENT_BYTES: usize = 2 * 1024 * 1024;

/// The budgets.
#[derive(Debug)]
pub struct BodyBudget {
    total: Arc<Semaphore>,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    per_client_max: usize,
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(TOTAL_BYTES, PER_CLIENT_BYTES)
    }
}

/// A reservation, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    client: IpAddr,
    bytes: usize,
    _total: OwnedSemaphorePermit,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.client, self.bytes);
    }
}

impl BodyBudget {
    /// Budgets of `total` bytes for the server and `per_client` for one address.
    #[must_use]
    pub fn new(total: usize, per_client: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            per_client: Mutex::new(HashMap::new()),
            per_client_max: per_client,
        }
    }

    /// Reserves `bytes` for a body from `client`, or `None` when either budget is spent.
    #[must_use]
    pub fn reserve(self: &Arc<Self>, client: IpAddr, bytes: usize) -> Option<Reservation> {
        let client = crate::guard::rate_limit::bucket_key(client);
        let permits = u32::try_from(bytes).ok()?;
        {
            let mut held = self
                .per_client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let used = held.entry(client).or_insert(0);
            if *used + bytes > self.per_client_max {
                if *used == 0 {
                    held.remove(&client);
                }
                return None;
            }
            *used += bytes;
        }
        let Ok(total) = Arc::clone(&self.total).try_acquire_many_owned(permits) else {
            self.give_back(client, bytes);
            return None;
        };
        Some(Reservation {
            budget: Arc::clone(self),
            client,
            bytes,
            _total: total,
        })
    }

    fn give_back(&self, client: IpAddr, bytes: usize) {
        let mut held = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&client) {
            *n = n.saturating_sub(bytes);
            if *n == 0 {
                held.remove(&client);
            }
        }
    }

    /// Addresses currently holding a reservation (tests of the bookkeeping).
    #[must_use]
    pub fn clients(&self) -> usize {
        self.per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_cannot_take_more_than_its_share_nor_the_others_theirs() {
        let budget = Arc::new(BodyBudget::new(300, 100));
        let a = ip("192.0.2.1");
        let first = budget.reserve(a, 60).unwrap();
        assert!(budget.reserve(a, 60).is_none(), "over the address's share");
        let second = budget.reserve(a, 40).unwrap();
        // Others are unaffected, up to the total.
        let b = budget.reserve(ip("192.0.2.2"), 100).unwrap();
        let c = budget.reserve(ip("192.0.2.3"), 100).unwrap();
        assert!(
            budget.reserve(ip("192.0.2.4"), 1).is_none(),
            "the total is spent"
        );
        assert_eq!(budget.clients(), 3, "a refused address holds nothing");
        drop((first, second, b, c));
        assert_eq!(budget.clients(), 0);
        assert!(budget.reserve(ip("192.0.2.4"), 100).is_some());
        // An IPv6 /64 is one client.
        let v6 = budget.reserve(ip("2001:db8::1"), 100).unwrap();
        assert!(budget.reserve(ip("2001:db8::2"), 1).is_none());
        drop(v6);
    }
}

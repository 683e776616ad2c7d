//! [`MemoryOrders`]: the orders of a region that is one process.

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use herald_core::{Order, Orders, OrdersError, Revocation, now_ms};

/// Orders in memory: issued orders go straight to this process's watchers.
pub struct MemoryOrders {
    orders: broadcast::Sender<Order>,
    standing: Mutex<Vec<Revocation>>,
    issued: Mutex<u64>,
}

impl Default for MemoryOrders {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryOrders {
    /// No orders yet; watchers may fall 1024 orders behind before they lag.
    pub fn new() -> Self {
        Self { orders: broadcast::channel(1024).0, standing: Mutex::new(Vec::new()), issued: Mutex::new(0) }
    }
}

#[async_trait]
impl Orders for MemoryOrders {
    async fn issue(&self, order: Order) -> Result<String, OrdersError> {
        let now = now_ms();
        order.validate(now)?;
        let id = {
            let mut n = self.issued.lock();
            *n += 1;
            format!("{now}-{n}")
        };
        if let Order::Revoke(r) = &order {
            let mut standing = self.standing.lock();
            standing.retain(|s| s.until_ms > now);
            standing.push(r.clone());
        }
        // No watcher is fine: nobody is connected.
        let _ = self.orders.send(order);
        Ok(id)
    }

    fn watch(&self) -> broadcast::Receiver<Order> {
        self.orders.subscribe()
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, OrdersError> {
        let now = now_ms();
        Ok(self.standing.lock().iter().filter(|r| r.until_ms > now).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn memory_orders_pass_the_orders_conformance_suite() {
        let o = Arc::new(MemoryOrders::new());
        herald_core::orders::conformance::run_all(o.clone(), o).await;
    }
}

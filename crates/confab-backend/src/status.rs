//! The fourth engine interface, for the admin status page only: every gateway
//! reports a small [`GatewayStatus`] record every few seconds, any gateway reads
//! all of them back (stale ones are dropped), and the backend describes its own
//! health. Kept apart from [`crate::Broker`] and [`crate::Presence`] because
//! nothing on the chat path depends on it.

use crate::BackendError;
use async_trait::async_trait;
use confab_core::protocol::{BackendStatus, GatewayStatus};

/// Gateway reports and backend health, cluster-wide.
#[async_trait]
pub trait Status: Send + Sync + 'static {
    /// The id this node reports under: the Redis backend's gateway id, or
    /// `embedded` (`embedded-<n>` for further nodes of one memory hub).
    fn node_id(&self) -> String;

    /// Store this node's report, replacing its previous one. The backend stamps
    /// `updated_at` with its own clock (so reports of gateways on hosts with
    /// skewed clocks compare fairly) and returns the stamp.
    async fn put_gateway_status(&self, status: &GatewayStatus) -> Result<u64, BackendError>;

    /// Remove this node's report (a gateway stopping leaves the page at once).
    async fn remove_gateway_status(&self) -> Result<(), BackendError>;

    /// Every report not older than `max_age` by the backend's clock, sorted by id,
    /// at most `limit`, and how many fresh reports there were in all. Older
    /// reports are removed (a gateway that stopped reporting disappears).
    async fn gateway_statuses(
        &self,
        max_age: std::time::Duration,
        limit: usize,
    ) -> Result<(Vec<GatewayStatus>, usize), BackendError>;

    /// The backend's health and memory, as of now; never fails (an unreachable
    /// backend is `healthy: false` with the error).
    async fn backend_status(&self) -> BackendStatus;
}

/// Fields of a Redis `INFO` reply (`key:value` lines, `#` section headers) that
/// the status page shows, parsed into a [`BackendStatus`] of kind `redis`. Pure.
pub fn parse_redis_info(info: &str) -> BackendStatus {
    let mut s = BackendStatus {
        kind: "redis".into(),
        healthy: true,
        ..BackendStatus::default()
    };
    for line in info.lines() {
        let Some((key, value)) = line.trim_end().split_once(':') else {
            continue;
        };
        match key {
            "redis_version" => s.version = Some(value.to_owned()),
            "uptime_in_seconds" => s.uptime_s = value.parse().ok(),
            "used_memory" => s.used_memory = value.parse().ok(),
            "maxmemory" => s.maxmemory = value.parse().ok(),
            "maxmemory_policy" => s.maxmemory_policy = Some(value.to_owned()),
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::parse_redis_info;

    #[test]
    fn redis_info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n\r\n\
                    # Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n\
                    maxmemory:0\r\nmaxmemory_policy:noeviction\r\n";
        let s = parse_redis_info(info);
        assert_eq!(s.kind, "redis");
        assert!(s.healthy);
        assert_eq!(s.version.as_deref(), Some("7.0.15"));
        assert_eq!(s.uptime_s, Some(42));
        assert_eq!(s.used_memory, Some(1_048_576));
        assert_eq!(s.maxmemory, Some(0));
        assert_eq!(s.maxmemory_policy.as_deref(), Some("noeviction"));
        let empty = parse_redis_info("");
        assert_eq!(empty.version, None);
        assert_eq!(empty.used_memory, None);
    }
}

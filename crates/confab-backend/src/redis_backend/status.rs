//! [`Status`] on Redis: each gateway's latest report is one field of the hash
//! `confab:gwstats` (msgpack), stamped with Redis's clock; readers drop and remove
//! reports older than the given age. The backend's health is `INFO server` and
//! `INFO memory`.

use super::RedisNode;
use crate::status::{parse_redis_info, Status};
use crate::BackendError;
use async_trait::async_trait;
use confab_core::protocol::{BackendStatus, GatewayStatus};
use std::collections::HashMap;
use std::time::Duration;

fn encode_status(s: &GatewayStatus) -> Result<Vec<u8>, BackendError> {
    rmp_serde::to_vec_named(s).map_err(|e| BackendError::Internal(format!("encode status: {e}")))
}

#[async_trait]
impl Status for RedisNode {
    fn node_id(&self) -> String {
        self.shared.gateway_id.clone()
    }

    async fn put_gateway_status(&self, status: &GatewayStatus) -> Result<u64, BackendError> {
        let sh = &self.shared;
        let now = sh.server_time_ms().await?;
        let mut stored = status.clone();
        stored.updated_at = now;
        stored.id = sh.gateway_id.clone();
        sh.query::<redis::Value>(
            redis::cmd("HSET")
                .arg(sh.keys.gateway_status())
                .arg(&sh.gateway_id)
                .arg(encode_status(&stored)?),
        )
        .await?;
        Ok(now)
    }

    async fn remove_gateway_status(&self) -> Result<(), BackendError> {
        let sh = &self.shared;
        sh.query::<redis::Value>(
            redis::cmd("HDEL")
                .arg(sh.keys.gateway_status())
                .arg(&sh.gateway_id),
        )
        .await
        .map(|_| ())
    }

    async fn gateway_statuses(
        &self,
        max_age: Duration,
        limit: usize,
    ) -> Result<(Vec<GatewayStatus>, usize), BackendError> {
        let sh = &self.shared;
        let key = sh.keys.gateway_status();
        let mut pipe = redis::pipe();
        pipe.cmd("TIME").cmd("HGETALL").arg(&key);
        let ((secs, micros), all): ((u64, u64), HashMap<String, Vec<u8>>) =
            sh.query_pipe(&pipe).await?;
        let cutoff = (secs * 1000 + micros / 1000).saturating_sub(max_age.as_millis() as u64);
        let mut fresh = Vec::new();
        let mut stale = Vec::new();
        for (id, raw) in all {
            match rmp_serde::from_slice::<GatewayStatus>(&raw) {
                Ok(s) if s.updated_at >= cutoff => fresh.push(s),
                // Stale, or written by an incompatible version: gone.
                _ => stale.push(id),
            }
        }
        if !stale.is_empty() {
            if let Err(e) = sh
                .query::<redis::Value>(redis::cmd("HDEL").arg(&key).arg(&stale))
                .await
            {
                tracing::debug!(error = %e, "stale gateway reports not removed");
            }
        }
        fresh.sort_by(|a, b| a.id.cmp(&b.id));
        let total = fresh.len();
        fresh.truncate(limit);
        Ok((fresh, total))
    }

    async fn backend_status(&self) -> BackendStatus {
        let started = std::time::Instant::now();
        let mut pipe = redis::pipe();
        pipe.cmd("INFO").arg("server").cmd("INFO").arg("memory");
        match self.shared.query_pipe::<(String, String)>(&pipe).await {
            Ok((server, memory)) => BackendStatus {
                round_trip_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                ..parse_redis_info(&format!("{server}\n{memory}"))
            },
            Err(e) => BackendStatus {
                kind: "redis".into(),
                healthy: false,
                error: Some(e.to_string()),
                ..BackendStatus::default()
            },
        }
    }
}

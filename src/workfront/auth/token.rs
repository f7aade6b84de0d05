//! One token per process, shared by every call: renewed before it expires, renewed once after a
//! refusal, and never renewed twice at once (callers that find it stale wait for the one renewal).

use std::future::Future;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::super::Failure;

/// Renew when less than this share of the token's life is left (and at least a minute early).
const EARLY: f64 = 0.1;
/// The lifetime assumed when the endpoint does not say (`expires_in` is optional).
const ASSUMED_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug)]
struct Token {
    value: SecretString,
    renew_at: Instant,
    generation: u64,
}

#[derive(Debug, Default)]
pub struct Cache {
    current: Mutex<Option<Token>>,
    /// How many tokens this process obtained (for logs and tests).
    issued: std::sync::atomic::AtomicU64,
    /// The newest generation Workfront refused; a token of it or older is renewed on next use.
    refused: std::sync::atomic::AtomicU64,
}

impl Cache {
    /// The token to use and its generation, fetching a new one with `fetch` when there is none,
    /// it is due for renewal, or it was invalidated.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<(String, u64), Failure>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Option<Duration>), Failure>>,
    {
        let mut current = self.current.lock().await;
        let refused = self.refused.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = current
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at && t.generation > refused)
        {
            return Ok((t.value.expose_secret().to_string(), t.generation));
        }
        let (value, ttl) = fetch().await?;
        let ttl = ttl.unwrap_or(ASSUMED_TTL);
        let early = ttl.mul_f64(EARLY).max(Duration::from_secs(60)).min(ttl / 2);
        let generation = self
            .issued
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let token = Token {
            value,
            renew_at: Instant::now() + ttl - early,
            generation,
        };
        let out = (token.value.expose_secret().to_string(), generation);
        *current = Some(token);
        tracing::info!(
            generation,
            ttl_secs = ttl.as_secs(),
            "Workfront token obtained"
        );
        Ok(out)
    }

    /// The token of `generation` was refused: renew on next use (a newer one is kept).
    pub fn invalidate(&self, generation: u64) {
        self.refused
            .fetch_max(generation, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn twenty_concurrent_callers_with_no_token_cause_one_fetch() {
        let cache = Arc::new(Cache::default());
        let fetches = Arc::new(AtomicU32::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.spawn(async move {
                cache
                    .get(|| async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok((
                            SecretString::from("t1".to_string()),
                            Some(Duration::from_secs(600)),
                        ))
                    })
                    .await
                    .unwrap()
            });
        }
        for (token, generation) in tasks.join_all().await {
            assert_eq!((token.as_str(), generation), ("t1", 1));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_invalidated_token_is_renewed_once_and_a_stale_invalidation_is_ignored() {
        let cache = Cache::default();
        let fetch = |v: &'static str| {
            move || async move {
                Ok((
                    SecretString::from(v.to_string()),
                    Some(Duration::from_secs(600)),
                ))
            }
        };
        let (_, g1) = cache.get(fetch("a")).await.unwrap();
        cache.invalidate(g1);
        let (t2, g2) = cache.get(fetch("b")).await.unwrap();
        assert_eq!((t2.as_str(), g2), ("b", 2));
        cache.invalidate(g1);
        assert_eq!(
            cache.get(fetch("c")).await.unwrap().0,
            "b",
            "g1 is not current"
        );
    }

    #[tokio::test]
    async fn a_token_close_to_expiry_is_renewed_before_use() {
        let cache = Cache::default();
        let short = || async {
            Ok((
                SecretString::from("s".to_string()),
                Some(Duration::from_secs(0)),
            ))
        };
        cache.get(short).await.unwrap();
        let (t, g) = cache
            .get(|| async { Ok((SecretString::from("n".to_string()), None)) })
            .await
            .unwrap();
        assert_eq!((t.as_str(), g), ("n", 2));
    }
}

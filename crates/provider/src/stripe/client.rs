//! The HTTP side of the Stripe provider: authentication, the pinned API version,
//! idempotency keys, retries with backoff and jitter, timeouts, and Stripe's error
//! responses mapped to `ProviderError`.
//!
//! Retries happen only where a retry is safe and useful: network errors, timeouts,
//! 409 (a concurrent request with the same idempotency key), 429 and 5xx, or when
//! Stripe says so with `Stripe-Should-Retry: true`. Every retry of a POST reuses the
//! request's idempotency key, so Stripe applies the operation at most once.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use paybridge_core::stripe::objects::ErrorObject;

use crate::{Call, Form, ProviderError, Result};

/// The API version paybridge is written against; sent on every request so a change of
/// the account's default version cannot change the shapes we receive.
pub const STRIPE_VERSION: &str = "2024-06-20";

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter, at least `base_delay / 2`.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_delay);
        let half = exp / 2;
        let jittered = half + rand::thread_rng().gen_range(Duration::ZERO..=half);
        retry_after.map_or(jittered, |r| r.min(self.max_delay).max(jittered))
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

impl Client {
    pub fn new(base: &str, timeout: Duration, retry: RetryPolicy) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .timeout(timeout)
            .user_agent(concat!("paybridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with static settings");
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            retry,
        }
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        call: &Call,
        path: &str,
        query: &Form,
    ) -> Result<T> {
        self.send(Method::GET, call, path, query).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        call: &Call,
        path: &str,
        form: &Form,
    ) -> Result<T> {
        self.send(Method::POST, call, path, form).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, call: &Call, path: &str) -> Result<T> {
        self.send(Method::DELETE, call, path, &Form::new()).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        call: &Call,
        path: &str,
        form: &Form,
    ) -> Result<T> {
        let key = call
            .secret_key
            .as_ref()
            .ok_or_else(|| ProviderError::Authentication {
                message: "the app has no Stripe secret key configured".into(),
            })?;
        if method != Method::GET {
            if let Some(fence) = &call.fence {
                fence
                    .wait()
                    .await
                    .map_err(|message| ProviderError::Unavailable { message })?;
            }
        }
        let url = format!("{}{path}", self.base);
        let body = form.encode();
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(key.expose_secret())
                .header("Stripe-Version", STRIPE_VERSION);
            if let Some(account) = &call.account {
                req = req.header("Stripe-Account", account);
            }
            if method == Method::POST {
                req = req
                    .header("Idempotency-Key", &call.idempotency_key)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone());
            } else if !body.is_empty() {
                req = req.query(form.pairs());
            }
            let outcome = match req.send().await {
                Ok(resp) => Self::read(resp).await,
                Err(e) => Err(Failure::Retryable(
                    ProviderError::Unavailable {
                        message: format!("network error talking to Stripe: {}", without_url(&e)),
                    },
                    None,
                )),
            };
            match outcome {
                Ok(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|e| ProviderError::Unavailable {
                        message: format!("Stripe's answer could not be read: {e}"),
                    })
                }
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retryable(e, retry_after)) => {
                    if attempt >= self.retry.max_retries {
                        return Err(e);
                    }
                    let wait = self.retry.delay(attempt, retry_after);
                    tracing::warn!(path, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying a Stripe request");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn read(resp: reqwest::Response) -> std::result::Result<bytes::Bytes, Failure> {
        let status = resp.status();
        let should_retry = resp
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| {
            Failure::Retryable(
                ProviderError::Unavailable {
                    message: format!("Stripe's answer was cut off: {}", without_url(&e)),
                },
                None,
            )
        })?;
        if status.is_success() {
            return Ok(bytes);
        }
        let err = serde_json::from_slice::<ErrorEnvelope>(&bytes)
            .map(|e| e.error)
            .unwrap_or_default();
        let message = err
            .message
            .clone()
            .unwrap_or_else(|| format!("Stripe answered {status}"));
        let retryable = match should_retry {
            Some(s) => s,
            None => {
                status == StatusCode::CONFLICT
                    || status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
        };
        let mapped = match status {
            StatusCode::PAYMENT_REQUIRED => ProviderError::Card {
                code: err.code,
                decline_code: err.decline_code,
                message,
                payment_intent: serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| serde_json::from_value(v["error"]["payment_intent"].clone()).ok())
                    .map(Box::new),
            },
            StatusCode::UNAUTHORIZED => ProviderError::Authentication { message },
            StatusCode::FORBIDDEN => ProviderError::Permission { message },
            StatusCode::NOT_FOUND => ProviderError::NotFound { message },
            s if s.is_client_error() && !retryable => ProviderError::Invalid {
                code: err.code,
                param: err.param,
                message,
            },
            _ => ProviderError::Unavailable {
                message: format!("Stripe answered {status}: {message}"),
            },
        };
        if retryable {
            Err(Failure::Retryable(mapped, retry_after))
        } else {
            Err(Failure::Final(mapped))
        }
    }
}

enum Failure {
    Final(ProviderError),
    Retryable(ProviderError, Option<Duration>),
}

/// A reqwest error's text without its URL (which could carry ids of no use in logs).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the response body failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let p = RetryPolicy::default();
        for attempt in 0..6 {
            let d = p.delay(attempt, None);
            let cap = (p.base_delay * (1 << attempt)).min(p.max_delay);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(60))), p.max_delay);
    }
}

#[cfg(test)]
mod fence_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    use super::*;
    use crate::{Fence, FenceWait};

    /// Opens once told to.
    struct Gate(Arc<Notify>);

    impl Fence for Gate {
        fn wait(&self) -> FenceWait<'_> {
            Box::pin(async move {
                self.0.notified().await;
                Ok(())
            })
        }
    }

    /// A server that counts the requests it gets and answers each `{}`.
    async fn counting_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    if sock.read(&mut buf).await.unwrap_or(0) > 0 {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                            .await;
                    }
                });
            }
        });
        (base, seen)
    }

    /// A call that changes something leaves only once its fence opens; a read does not
    /// wait for it.
    #[tokio::test]
    async fn a_post_waits_for_its_fence_and_a_get_does_not() {
        let (base, seen) = counting_server().await;
        let client = Client::new(&base, Duration::from_secs(5), RetryPolicy::default());
        let open = Arc::new(Notify::new());
        let call = Call::new("app_1", Some("sk_test_x".to_owned().into()), "op")
            .fenced(Arc::new(Gate(open.clone())));

        let _: serde_json::Value = client.get(&call, "/v1/things", &Form::new()).await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 1, "a GET does not wait");

        let posting = tokio::spawn({
            let client = client.clone();
            async move {
                let r: Result<serde_json::Value> =
                    client.post(&call, "/v1/things", &Form::new()).await;
                r
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "the POST left before its fence opened"
        );
        assert!(!posting.is_finished());
        open.notify_one();
        let r = tokio::time::timeout(Duration::from_secs(5), posting).await;
        assert!(matches!(r, Ok(Ok(Ok(_)))), "{r:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }
}

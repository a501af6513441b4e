//! The inference pool: a fixed set of OS threads that run model forwards,
//! never on Rocket's async workers.

use rocket::http::Status;

use super::request::{ApiError, ApiResult};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of inference threads fed through a channel.
pub struct Pool {
    tx: crossbeam_channel::Sender<Job>,
    pub workers: usize,
}

impl Pool {
    pub fn new(workers: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                });
        }
        Pool {
            tx,
            workers: workers.max(1),
        }
    }

    /// Run `f` on an inference thread and wait for it without blocking the
    /// async worker.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let (tx, rx) = rocket::tokio::sync::oneshot::channel();
        self.tx
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| ApiError::new(Status::ServiceUnavailable, "the inference pool is gone"))?;
        rx.await
            .map_err(|_| ApiError::new(Status::InternalServerError, "an inference thread failed"))
    }
}

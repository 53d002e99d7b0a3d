//! An embedder on its own OS thread, callable from async tasks.
//!
//! ONNX Runtime inference is CPU-bound and takes tens of milliseconds: run inline it would stall
//! the tokio worker threads that also drive Redis. `Session::run` takes `&mut self`, so the thread
//! owns the model; async callers send crops over a bounded channel and await the reply.

use image::RgbImage;
use tokio::sync::{mpsc, oneshot};

use crate::vision::{Embedder, VisionError};

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, VisionError>>;

/// A handle to the embedding thread; clones share the thread. The thread ends when the last
/// handle is dropped.
#[derive(Clone)]
pub struct EmbedService {
    tx: mpsc::Sender<(Vec<RgbImage>, Reply)>,
    model_id: String,
    dim: usize,
    input_size: u32,
}

impl EmbedService {
    /// Moves `embedder` onto a new thread called `name`.
    pub fn spawn(name: &str, mut embedder: Box<dyn Embedder>) -> std::io::Result<EmbedService> {
        let (tx, mut rx) = mpsc::channel::<(Vec<RgbImage>, Reply)>(1);
        let service = EmbedService {
            tx,
            model_id: embedder.model_id().to_owned(),
            dim: embedder.dim(),
            input_size: embedder.input_size(),
        };
        std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            while let Some((crops, reply)) = rx.blocking_recv() {
                // The caller may have given up (shutdown); nothing to do then.
                let _ = reply.send(embedder.embed(&crops));
            }
        })?;
        Ok(service)
    }

    /// Embeddings of `crops`, in order.
    pub async fn embed(&self, crops: Vec<RgbImage>) -> Result<Vec<Vec<f32>>, VisionError> {
        let gone = || VisionError::InvalidInput {
            stage: "embed",
            detail: "the embedding thread has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        self.tx.send((crops, reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn input_size(&self) -> u32 {
        self.input_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::FakeEmbedder;

    #[tokio::test]
    async fn embeds_off_the_async_threads() {
        let service = EmbedService::spawn("embed-test", Box::new(FakeEmbedder::new(8))).unwrap();
        let size = service.input_size();
        let crops = vec![RgbImage::new(size, size), RgbImage::from_pixel(size, size, image::Rgb([9, 9, 9]))];
        let out = service.clone().embed(crops).await.unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|e| e.len() == 8));
    }
}

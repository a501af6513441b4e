//! Logistic regression: a weight per categorical value (hashed or from the
//! vocabulary), a linear map of the dense inputs, and a bias.
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::layers::LinearPart;
use super::{check_init_std, default_init_std, CtrModel, InputShape, ModelSettings};

#[derive(Debug)]
pub struct Lr {
    linear: LinearPart,
}

/// LR's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LrConfig {
    /// Standard deviation of the initial weight of each categorical value
    /// (default 1e-4).
    #[serde(default = "default_init_std")]
    pub embedding_init_std: f64,
}

impl ModelSettings for LrConfig {
    fn check(&self) -> Result<(), String> {
        check_init_std(self.embedding_init_std)
    }

    fn build(&self, vs: &nn::Path, shape: InputShape) -> Box<dyn CtrModel> {
        Box::new(Lr::new(vs, self, shape))
    }

    fn summary(&self) -> String {
        String::new()
    }
}

impl Lr {
    pub fn new(vs: &nn::Path, cfg: &LrConfig, shape: InputShape) -> Self {
        Lr {
            linear: LinearPart::for_model(&(vs / "linear"), cfg.embedding_init_std, shape),
        }
    }
}

impl CtrModel for Lr {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, _train: bool) -> Tensor {
        self.linear.forward(ids, dense)
    }
}

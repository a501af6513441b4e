//! Logistic regression: a weight per categorical value (hashed or from the
//! vocabulary), a linear map of the dense inputs, and a bias.
use tch::{nn, Tensor};

use super::layers::LinearPart;
use super::{CtrModel, InputShape, ModelConfig};

#[derive(Debug)]
pub struct Lr {
    linear: LinearPart,
}

impl Lr {
    pub fn new(vs: &nn::Path, cfg: &ModelConfig, shape: InputShape) -> Self {
        Lr {
            linear: LinearPart::for_model(&(vs / "linear"), cfg, shape),
        }
    }
}

impl CtrModel for Lr {
    fn forward_t(&self, ids: &Tensor, dense: &Tensor, _train: bool) -> Tensor {
        self.linear.forward(ids, dense)
    }
}

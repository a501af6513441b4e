//! libtorch as this process sees it, and device selection (`auto`, `cpu`,
//! `cuda`, `cuda:N`) shared by training and serving.
use serde::Serialize;
use tch::{Cuda, Device, Kind, Tensor};

#[derive(Debug, Clone, Serialize)]
pub struct TorchInfo {
    pub intra_op_threads: i32,
    pub interop_threads: i32,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    pub cudnn: bool,
    pub mkl: bool,
    pub openmp: bool,
    /// sum(1..=4) computed by libtorch: proves the library loads and runs.
    pub smoke_sum: f64,
}

pub fn torch_info() -> TorchInfo {
    let smoke = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).sum(Kind::Float);
    TorchInfo {
        intra_op_threads: tch::get_num_threads(),
        interop_threads: tch::get_num_interop_threads(),
        cuda_available: Cuda::is_available(),
        cuda_devices: Cuda::device_count(),
        cudnn: Cuda::cudnn_is_available(),
        mkl: tch::utils::has_mkl(),
        openmp: tch::utils::has_openmp(),
        smoke_sum: smoke.double_value(&[]),
    }
}

/// Resolve a device name: `auto` is CUDA when present, else CPU.
pub fn resolve_device(name: &str) -> Result<Device, String> {
    match name {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => cuda(i),
            _ => Err(format!(
                "unknown device `{other}` (auto, cpu, cuda, cuda:N)"
            )),
        },
    }
}

fn cuda(i: usize) -> Result<Device, String> {
    let n = Cuda::device_count();
    if (i as i64) < n {
        Ok(Device::Cuda(i))
    } else {
        Err(format!(
            "device cuda:{i} asked for, but this machine has {n} CUDA device(s)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_runs_and_devices_resolve() {
        assert_eq!(torch_info().smoke_sum, 10.0);
        assert_eq!(resolve_device("cpu"), Ok(Device::Cpu));
        assert!(resolve_device("tpu")
            .unwrap_err()
            .contains("unknown device"));
        if !Cuda::is_available() {
            assert_eq!(resolve_device("auto"), Ok(Device::Cpu));
            assert!(resolve_device("cuda").is_err());
        }
    }
}

//! Devices by name: `auto` (CUDA if available, else CPU), `cpu`, `cuda`, `cuda:N`.

use tch::Device;

/// A device name that is not understood or not available.
#[derive(Debug, thiserror::Error)]
#[error("device `{name}`: {message}")]
pub struct DeviceError {
    name: String,
    message: String,
}

/// Parses a device name.
pub fn parse_device(name: &str) -> Result<Device, DeviceError> {
    let err = |message: &str| DeviceError { name: name.to_string(), message: message.to_string() };
    match name {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let index = match name.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or_else(|| err("expected `auto`, `cpu`, `cuda` or `cuda:N`"))?,
                None => return Err(err("expected `auto`, `cpu`, `cuda` or `cuda:N`")),
            };
            if !tch::Cuda::is_available() {
                return Err(err("CUDA is not available on this machine (see `vrl doctor`)"));
            }
            if index >= tch::Cuda::device_count() as usize {
                return Err(err(&format!("only {} CUDA device(s) here", tch::Cuda::device_count())));
            }
            Ok(Device::Cuda(index))
        }
    }
}

/// `cpu` or `cuda:N`.
pub fn device_label(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_string(),
    }
}

/// A human name: the CPU model from `/proc/cpuinfo`, or the GPU name from `nvidia-smi`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name", "--format=csv,noheader", &format!("--id={i}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| format!("CUDA device {i}")),
        _ => std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu").unwrap_err().to_string().contains("expected `auto`"));
        assert!(parse_device("cuda:x").is_err());
        if !tch::Cuda::is_available() {
            assert!(parse_device("cuda").unwrap_err().to_string().contains("not available"));
            assert_eq!(parse_device("auto").unwrap(), Device::Cpu);
        }
        assert_eq!(device_label(Device::Cuda(1)), "cuda:1");
        assert!(!device_name(Device::Cpu).is_empty());
    }
}

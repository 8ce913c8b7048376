//! `docker` jobs: `docker run --rm --name burst-<job id>` (an array index's colon a dot) with the job's cpu and memory as limits, the
//! GPUs it was given, its env and working dir passed in, and `docker kill` to stop it.

use burst_proto::v1::{DockerSpec, JobSpec};

use super::Invocation;

/// Which GPUs the NVIDIA container runtime shows a container.
const NVIDIA_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// `gpus`, on a worker with GPUs: the devices the job was given (`0,2`), passed to the container with `--gpus`;
/// empty, it sees none.
pub fn invocation(
    job_id: &str,
    spec: &JobSpec,
    d: &DockerSpec,
    docker: &str,
    gpus: Option<&str>,
) -> Result<Invocation, String> {
    if d.image.is_empty() || d.image.starts_with('-') {
        return Err(format!("docker image {:?} is not an image reference", d.image));
    }
    // A container name has no colon: an array index's `<array id>:<index>` becomes `<array id>.<index>`.
    let name = format!("burst-{}", job_id.replace(':', "."));
    let mut args: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), name.clone()];
    args.extend(["--label".into(), format!("burst.dev/job={job_id}")]);
    let res = spec.resources.unwrap_or_default();
    if res.cpu_millis > 0 {
        args.extend(["--cpus".into(), format!("{:.3}", f64::from(res.cpu_millis) / 1000.0)]);
    }
    if res.memory_bytes > 0 {
        args.extend(["--memory".into(), format!("{}b", res.memory_bytes)]);
    }
    // On a worker with GPUs the container sees its own devices, or none: not the image's or the job's choice.
    match gpus {
        // Quoted: docker reads the value as CSV, and a list of devices has commas.
        Some(devices) if !devices.is_empty() => args.extend(["--gpus".into(), format!("\"device={devices}\"")]),
        Some(_) => args.extend(["--env".into(), format!("{NVIDIA_DEVICES}=void")]),
        None => {}
    }
    let mut env: Vec<_> = spec.env.iter().filter(|(k, _)| gpus.is_none() || k.as_str() != NVIDIA_DEVICES).collect();
    env.sort();
    for (k, v) in env {
        args.extend(["--env".into(), format!("{k}={v}")]);
    }
    if !spec.working_dir.is_empty() {
        args.extend(["--workdir".into(), spec.working_dir.clone()]);
    }
    // `--` is not accepted by `docker run` here; the image is the first positional argument, and it was
    // checked above not to look like a flag.
    args.push(d.image.clone());
    if !d.command.is_empty() {
        args.push(d.command.clone());
    }
    args.extend(d.args.iter().cloned());
    let stop = Some(vec![docker.to_string(), "kill".into(), name]);
    Ok(Invocation { program: docker.to_string(), args, stop, launch_failures: &[125, 126, 127] })
}

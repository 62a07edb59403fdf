"""Which CPU this is, from /proc/cpuinfo (Linux): the model, family and model numbers, and the instruction-set
flags. Results and benchmarks name it, since speed, the kernels oneDNN picks and float rounding depend on it
and a virtual machine's model name alone ("AMD EPYC") does not tell machines apart."""

from pathlib import Path


def cpu_identity() -> tuple[str, set[str]] | None:
  """("<model name> (family F model M)", the flags of the first CPU), or None where /proc/cpuinfo is absent."""
  try:
    first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
  except OSError:
    return None
  info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
  model = f"{info.get('model name', '?')} (family {info.get('cpu family', '?')} model {info.get('model', '?')})"
  return model, set(info.get("flags", "").split())

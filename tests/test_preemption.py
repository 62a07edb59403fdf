"""Ctrl-C in one process: the first SIGINT asks for a stop as SIGTERM does (the loop saves and stops), the second
interrupts at once; a SIGINT that the process ignored (a background job) stays ignored. The loop's side (a saved
checkpoint, exit 0, a bit-identical resume) is tested with the real command in test_reliability.py."""

import signal
import threading

import pytest

from gap_jax.preemption import StopRequest


def signal_this_thread(signum):
  """A signal to this (the main) thread, whose handler then runs before the next line: one sent to the process
  may land on another thread (XLA's) and run a moment later."""
  signal.pthread_kill(threading.get_ident(), signum)


@pytest.fixture
def sigint(request):
  """SIGINT set to request.param (Python's default handler unless given) for the test, then put back."""
  before = signal.signal(signal.SIGINT, getattr(request, "param", signal.default_int_handler))
  yield
  signal.signal(signal.SIGINT, before)


def test_the_first_ctrl_c_requests_a_stop_and_the_second_interrupts(sigint, capsys):
  with StopRequest() as stop:
    assert not stop.reached(1)
    signal_this_thread(signal.SIGINT)
    assert stop.reached(2) and stop.reason == "Ctrl-C"
    with pytest.raises(KeyboardInterrupt):
      signal_this_thread(signal.SIGINT)
  assert "Ctrl-C again quits at once" in capsys.readouterr().err
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_ctrl_c_the_handler_is_put_back_on_exit(sigint):
  with StopRequest() as stop:
    assert signal.getsignal(signal.SIGINT) != signal.default_int_handler
  assert not stop.requested and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_first_keeps_its_reason(sigint):
  with StopRequest() as stop:
    signal_this_thread(signal.SIGTERM)
    signal_this_thread(signal.SIGINT)
    assert stop.reached(1) and stop.reason == "SIGTERM"


@pytest.mark.parametrize("sigint", [signal.SIG_IGN], indirect=True)
def test_an_ignored_sigint_stays_ignored(sigint):
  with StopRequest() as stop:
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal_this_thread(signal.SIGINT)
  assert not stop.requested and signal.getsignal(signal.SIGINT) is signal.SIG_IGN

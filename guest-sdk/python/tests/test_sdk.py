"""Unit tests of the SDK's pure parts on plain CPython (no component, no host): retry
strategies and their defaults (mirroring the Rust SDK's), durations, typed errors, the URL
split of the HTTP helper and the handler's JSON round trip. The SDK against the real host is
tests/python.rs and the conformance kit (tests/conformance.rs)."""

import datetime
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import durable  # noqa: E402
from durable import _entry, http  # noqa: E402
from durable.context import round_trip  # noqa: E402
from durable.errors import DurableError  # noqa: E402
from durable.retry import Jitter, RetryStrategy, _Policy, millis  # noqa: E402


class Durations(unittest.TestCase):
    def test_millis_rounds_sub_millisecond_remainders_up(self):
        cases = [
            (0, 0),
            (0.000001, 1),
            (1.5, 1500),
            (0.0015, 2),
            (1.1, 1100),
            (datetime.timedelta(minutes=1, microseconds=1), 60_001),
            (24 * 3600, 86_400_000),
        ]
        for seconds, ms in cases:
            self.assertEqual(millis(seconds), ms, seconds)

    def test_negative_durations_are_refused(self):
        with self.assertRaises(ValueError):
            millis(-1)


class Retry(unittest.TestCase):
    def test_default_is_the_hosts_and_modifiers_spell_it_out(self):
        self.assertIsNone(RetryStrategy.default()._policy)
        p = RetryStrategy.default().retry_on(["TransientError"])._policy
        self.assertEqual((p.max_attempts, p.initial_delay_ms, p.max_delay_ms), (6, 5000, 60000))
        self.assertEqual((p.backoff, p.jitter, p.retry_on), (("exponential", 2.0), Jitter.FULL, ("TransientError",)))

    def test_constructors_match_the_rust_sdk(self):
        cases = [
            (RetryStrategy.none(), _Policy(1, 0, 0, ("exponential", 1.0), Jitter.NONE)),
            (RetryStrategy.exponential(5, 1, 2, 30), _Policy(5, 1000, 30000, ("exponential", 2.0), Jitter.FULL)),
            (RetryStrategy.linear(4, 0.5, 0.25, 10), _Policy(4, 500, 10000, ("linear", 250), Jitter.FULL)),
            (RetryStrategy.fixed(3, 1), _Policy(3, 1000, 1000, ("exponential", 1.0), Jitter.NONE)),
        ]
        for strategy, policy in cases:
            self.assertEqual(strategy._policy, policy)

    def test_modifiers_return_copies_and_take_error_classes(self):
        class Boom(DurableError):
            pass

        base = RetryStrategy.fixed(3, 1)
        changed = base.never_retry_on([Boom, "Other", ValueError]).jitter(Jitter.HALF)
        self.assertEqual(base._policy.never_retry_on, ())
        self.assertEqual(changed._policy.never_retry_on, ("Boom", "Other", "ValueError"))
        self.assertEqual(changed._policy.jitter, Jitter.HALF)


class Errors(unittest.TestCase):
    def test_a_subclass_is_its_own_error_type_and_comes_back_as_itself(self):
        class ValidationError(DurableError):
            pass

        e = ValidationError("username is required", data={"field": "username"})
        self.assertEqual((e.error_type, e.error_message), ("ValidationError", "username is required"))
        self.assertEqual(e.data, {"field": "username"})
        again = DurableError.of("ValidationError", "username is required", e.error_data)
        self.assertIsInstance(again, ValidationError)
        self.assertIsInstance(DurableError.of("Callback.Timeout", "late"), durable.CallbackTimeout)
        self.assertIs(type(DurableError.of("Unknown.Type", "x")), DurableError)

    def test_any_exception_becomes_an_error_named_after_its_class_with_its_traceback(self):
        try:
            {}["missing"]
        except KeyError as k:
            e = DurableError.from_exception(k)
        self.assertEqual(e.error_type, "KeyError")
        self.assertIn("Traceback", e.data["traceback"])

    def test_data_that_is_not_json_is_dropped(self):
        self.assertIsNone(DurableError("x", data=object()).error_data)


class Json(unittest.TestCase):
    def test_a_value_is_what_a_replay_will_read(self):
        text, value = round_trip({"t": (1, 2), 3: "x"}, "step result")
        self.assertEqual(text, '{"t":[1,2],"3":"x"}')
        self.assertEqual(value, {"t": [1, 2], "3": "x"})

    def test_values_that_are_not_json_are_serialization_errors(self):
        for bad in (float("nan"), object(), {1, 2}):
            with self.assertRaises(durable.SerializationError):
                round_trip(bad, "step result")

    def test_the_handler_parses_the_event_and_serializes_the_output(self):
        seen = []

        def fn(ctx, event):
            seen.append(event)
            return {"ok": True, "text": "é"}

        _entry._HANDLER = fn
        try:
            self.assertEqual(_entry.run('{"a": 1}'), '{"ok":true,"text":"é"}')
            self.assertEqual(_entry.run("  "), '{"ok":true,"text":"é"}')
            self.assertEqual(seen, [{"a": 1}, None])
            with self.assertRaises(durable.InvalidInput):
                _entry.run("{not json")
        finally:
            _entry._HANDLER = None

    def test_an_exception_in_the_handler_fails_with_its_type(self):
        def fn(ctx, event):
            raise ValueError("bad value")

        _entry._HANDLER = fn
        try:
            with self.assertRaises(DurableError) as caught:
                _entry.run("{}")
            self.assertEqual((caught.exception.error_type, caught.exception.error_message), ("ValueError", "bad value"))
        finally:
            _entry._HANDLER = None


class Waits(unittest.TestCase):
    def test_a_wait_takes_a_name_and_seconds_or_only_seconds(self):
        calls = []

        class Host:
            def wait(self, parent, name, ms):
                calls.append((parent, name, ms))

        from durable import _bindings

        _bindings.host = Host()
        try:
            ctx = durable.Context()
            ctx.wait(seconds=1)
            ctx.wait("cool-down", seconds=0.25)
            ctx.wait(5)
            ctx.wait(datetime.timedelta(milliseconds=3))
            durable.Context("3").wait("inner", seconds=0)
        finally:
            del _bindings.host
        self.assertEqual(
            calls,
            [(None, None, 1000), (None, "cool-down", 250), (None, None, 5000), (None, None, 3), ("3", "inner", 0)],
        )


class Urls(unittest.TestCase):
    def test_host_port_path_and_query(self):
        cases = [
            ("http://127.0.0.1:8080/check-status/job-1?x=1", ("http", "127.0.0.1:8080", "/check-status/job-1?x=1")),
            ("HTTPS://example.com", ("https", "example.com", "/")),
            ("http://example.com?q=1#frag", ("http", "example.com", "/?q=1")),
            ("http://example.com/a#frag", ("http", "example.com", "/a")),
        ]
        for url, parts in cases:
            self.assertEqual(http._split(url), parts, url)

    def test_bad_urls_are_refused(self):
        for url in ["example.com/x", "ftp://example.com/", "http:///path", "http://user:pw@example.com/", "http://exa mple.com/"]:
            with self.assertRaises(ValueError, msg=url):
                http._split(url)


class DeterministicValues(unittest.TestCase):
    """The pure halves of `ctx.now()`, `ctx.random()` and `ctx.uuid()` (the step bodies and
    the conversions of their recorded values), as the Rust SDK's `deterministic.rs`."""

    def test_reserved_step_names_match_the_protocol_guide(self):
        from durable import deterministic as det

        self.assertEqual((det.NOW_STEP, det.RANDOM_STEP, det.UUID_STEP), ("durable.now", "durable.random", "durable.uuid"))
        for method in ("now", "random", "uuid"):
            self.assertTrue(callable(getattr(durable.Context, method)), method)

    def test_now_is_whole_milliseconds_and_converts_exactly(self):
        import time

        from durable import deterministic as det

        before = time.time_ns() // 1_000_000
        millis = det.read_now()
        after = time.time_ns() // 1_000_000
        self.assertTrue(before <= millis <= after, (before, millis, after))
        dt = det.to_datetime(1_764_632_096_789)
        self.assertEqual(dt.isoformat(), "2025-12-01T23:34:56.789000+00:00")
        self.assertEqual(round(dt.timestamp() * 1000), 1_764_632_096_789)
        self.assertEqual(json.loads(json.dumps(millis)), millis)

    def test_random_is_an_exact_53_bit_grid_in_0_1(self):
        from durable import deterministic as det

        draws = [det.read_random() for _ in range(200)]
        self.assertTrue(all(0 <= n < 2**53 for n in draws))
        self.assertGreater(len(set(draws)), 190)
        cases = [(0, 0.0), (2**52, 0.5), (2**53 - 1, 1 - 2**-53)]
        for n, x in cases:
            self.assertEqual(det.to_float(n), x, n)
            self.assertEqual(int(det.to_float(n) * 2**53), n)
        self.assertTrue(all(0.0 <= det.to_float(n) < 1.0 for n in draws))

    def test_uuid_is_version_4_text(self):
        import re
        import uuid

        from durable import deterministic as det

        ids = {det.read_uuid() for _ in range(50)}
        self.assertEqual(len(ids), 50)
        shape = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        for text in ids:
            self.assertRegex(text, shape)
            self.assertEqual(uuid.UUID(text).version, 4)


if __name__ == "__main__":
    unittest.main()


class WaitStrategies(unittest.TestCase):
    """The same decisions as the Rust SDK's `condition::tests::decisions_follow_the_knobs`."""

    def test_decisions_follow_the_knobs(self):
        from durable import MaxAttemptsExceeded, WaitStrategy

        def until3(**kw):
            return WaitStrategy(lambda s: s >= 3, **kw)

        cases = [
            ("done stops", until3().decide(3, 1, 0.5), None),
            ("fixed delay", WaitStrategy.fixed(lambda s: s >= 3, 2).decide(1, 4, 0.9), 2000),
            ("backoff", until3(initial_delay=1, backoff_rate=2.0, jitter=Jitter.NONE).decide(0, 3, 0.0), 4000),
            (
                "max delay caps",
                until3(initial_delay=10, backoff_rate=10.0, max_delay=30, jitter=Jitter.NONE).decide(0, 5, 0.0),
                30_000,
            ),
            ("full jitter", until3(initial_delay=1).decide(0, 1, 0.25), 250),
            ("half jitter", until3(initial_delay=1, jitter=Jitter.HALF).decide(0, 1, 0.5), 750),
        ]
        for name, got, want in cases:
            self.assertEqual(got, want, name)
        e = until3(max_attempts=3).decide(1, 3, 0.0)
        self.assertIsInstance(e, MaxAttemptsExceeded)
        self.assertEqual(e.error_type, "WaitForCondition.MaxAttemptsExceeded")
        self.assertTrue(0 <= until3().decide(0, 1) <= 5000)


class Batches(unittest.TestCase):
    def test_accessors_of_a_batch_result(self):
        from durable.batch import BatchItem

        boom = DurableError.of("ItemError", "boom")
        batch = durable.BatchResult(
            items=[
                BatchItem(0, "SUCCEEDED", result="a"),
                BatchItem(1, "FAILED", error=boom),
                BatchItem(2, "STARTED"),
                BatchItem(3, "SUCCEEDED", result=None),
            ],
            completion_reason="MIN_SUCCESSFUL_REACHED",
        )
        self.assertEqual(batch.results(), ["a", None])
        self.assertEqual(batch.errors(), [boom])
        self.assertEqual([i.index for i in batch.started()], [2])
        self.assertTrue(batch.has_failure)
        self.assertEqual(batch.status, "FAILED")
        self.assertEqual(
            (batch.success_count, batch.failure_count, batch.started_count, batch.total_count), (2, 1, 1, 4)
        )
        with self.assertRaises(DurableError) as e:
            batch.get_results()
        self.assertEqual(e.exception.error_type, "ItemError")
        durable.BatchResult(items=[BatchItem(0, "SUCCEEDED", result=1)]).throw_if_error()

    def test_an_invalid_config_fails_before_any_host_call(self):
        ctx = durable.Context()
        for kwargs in [{"max_concurrency": 0}, {"completion": durable.CompletionConfig(tolerated_failure_percentage=101)}]:
            with self.assertRaises(DurableError) as e:
                ctx.parallel("p", [lambda c: 1], **kwargs)
            self.assertEqual(e.exception.error_type, "InvalidConfig")
        self.assertEqual(durable.CompletionConfig.all_successful().tolerated_failure_count, 0)
        self.assertEqual(durable.CompletionConfig.first_successful().min_successful, 1)

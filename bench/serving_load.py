"""Load generator of bench_serving.py, run as its own process: open-loop requests on loopback.

    python bench/serving_load.py single URL ROWS.json --rate 50 --seconds 30
    python bench/serving_load.py batch URL ROWS.json --batch 1000 --requests 20

``single``: one row per request, sent on a fixed schedule (``rate`` per second) over one keep-alive
connection; latency is measured from the scheduled send time, so a slow answer that delays the next
request counts against the service (no coordinated omission). ``batch``: ``requests`` requests of
``batch`` rows back to back; rows per second over the whole run. Prints one JSON line.
"""

import argparse
import http.client
import json
import time
import urllib.parse


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] * 1000

    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99), "max_ms": ordered[-1] * 1000}


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> int:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["single", "batch"])
    parser.add_argument("url")
    parser.add_argument("rows")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    rows = json.loads(open(args.rows).read())
    url = urllib.parse.urlparse(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    errors = 0
    if args.mode == "single":
        bodies = [json.dumps({"rows": [row]}).encode() for row in rows]
        post(conn, "/predict", bodies[0])  # warm the connection
        interval = 1.0 / args.rate
        n = int(args.seconds * args.rate)
        latencies, service = [], []
        start = time.perf_counter()
        for i in range(n):
            scheduled = start + i * interval
            now = time.perf_counter()
            if now < scheduled:
                time.sleep(scheduled - now)
            sent = time.perf_counter()
            status = post(conn, "/predict", bodies[i % len(bodies)])
            done = time.perf_counter()
            errors += status != 200
            latencies.append(done - scheduled)
            service.append(done - sent)
        elapsed = time.perf_counter() - start
        print(json.dumps({"mode": "single", "requests": n, "errors": errors, "achieved_rps": n / elapsed,
                          **percentiles(latencies), "response_only": percentiles(service)}))
    else:
        batches = [rows[i:i + args.batch] for i in range(0, len(rows), args.batch)] or [rows]
        bodies = [json.dumps({"rows": b}).encode() for b in batches]
        post(conn, "/predict", bodies[0])
        total_rows, times = 0, []
        start = time.perf_counter()
        for i in range(args.requests):
            body = bodies[i % len(bodies)]
            sent = time.perf_counter()
            errors += post(conn, "/predict", body) != 200
            times.append(time.perf_counter() - sent)
            total_rows += len(batches[i % len(batches)])
        elapsed = time.perf_counter() - start
        print(json.dumps({"mode": "batch", "requests": args.requests, "rows": total_rows, "errors": errors,
                          "rows_per_s": total_rows / elapsed, **percentiles(times)}))


if __name__ == "__main__":
    main()

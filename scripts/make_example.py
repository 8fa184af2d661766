"""Generate the bundled example in ``examples/`` (synthetic; no copy of any real corpus).

The reviews are written from templates in Vietnamese (with and without diacritics, teencode),
English and Portuguese, with emoji, so the example exercises what real CX data looks like:
satisfied customers, disappointed ones, and customers asking for an improvement. Customers get
ids so the behaviour issue's orders and events can join on them.

    python scripts/make_example.py   # writes examples/reviews.csv, orders.csv, events.csv

The orders and events belong to the reviewers (plus a few customers who bought but never
wrote, so ``--unit customer`` has behaviour-only customers). Each customer has a hidden value
profile (VIP, regular, one-time) that drives how often, how recently and how much they buy
and how they engage; the files are deliberately messy in the ways real exports are: amounts
as Vietnamese currency strings ("1.250.000 ₫"), a few dd/mm/yyyy dates among ISO ones, some
cancelled orders, event times as Unix epoch seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
from pathlib import Path

import pandas as pd

POSITIVE = [
    "Sản phẩm rất tốt, giao hàng nhanh, đóng gói cẩn thận {e}",
    "Máy dùng mượt, pin trâu, chụp ảnh đẹp. Rất hài lòng {e}",
    "san pham tot, shop tu van nhiet tinh, se ung ho tiep {e}",
    "hàng đẹp lắm nha, giá hợp lý, ship nhanh {e}",
    "Great product, fast delivery and the battery lasts all day {e}",
    "Love it! Excellent quality for the price {e}",
    "Produto excelente, chegou rápido e bem embalado {e}",
    "Muito bom, recomendo! Atendimento nota 10 {e}",
]
NEGATIVE = [
    "Hàng giao chậm, hộp bị móp, rất thất vọng {e}",
    "Pin tụt nhanh, máy nóng, dùng 2 ngày đã lỗi {e}",
    "hang te qua, goi dien shop k ai nghe {e}",
    "chất lượng kém, không giống mô tả, phí tiền {e}",
    "Terrible quality, it broke after one week {e}",
    "Delivery was late and support never answered {e}",
    "Produto veio com defeito e a entrega atrasou muito {e}",
    "Péssimo atendimento, não recomendo {e}",
]
REQUEST = [
    "Máy ổn nhưng mong shop cải thiện thời gian giao hàng {e}",
    "Khi nào shop cập nhật thêm màu mới vậy? Mong sớm có {e}",
    "dung tam on, mong shop cai thien pin {e}",
    "Camera đẹp nhưng phần mềm hay lag, mong có bản cập nhật sửa lỗi",
    "Good phone but I hope you add a dark mode in the next update",
    "Please fix the app crash, otherwise it is fine",
    "Bom produto, mas espero que melhorem a bateria na próxima versão",
    "Gostaria que adicionassem mais opções de cor",
]
NEUTRAL = [
    "Đã nhận hàng.",
    "Hàng giống hình, chưa dùng nên chưa biết.",
    "It arrived on Tuesday.",
    "Recebi o pedido hoje.",
]
EMOJI_POS = ["😍", "👍", "❤️", "🥰", "😊😊", ""]
EMOJI_NEG = ["😡", "👎", "😤", "😞", ""]


def make_reviews(n_customers: int = 120, seed: int = 7) -> pd.DataFrame:
    """Synthetic reviews: each customer has a mood that drives what they write."""
    rng = random.Random(seed)
    rows = []
    moods = ["positive"] * 5 + ["negative"] * 3 + ["request"] * 2 + ["neutral"]
    for c in range(n_customers):
        cid = f"C{c:04d}"
        mood = rng.choice(moods)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            if mood == "positive":
                text, stars = (
                    rng.choice(POSITIVE).format(e=rng.choice(EMOJI_POS)),
                    rng.choice([4, 5]),
                )
            elif mood == "negative":
                text, stars = (
                    rng.choice(NEGATIVE).format(e=rng.choice(EMOJI_NEG)),
                    rng.choice([1, 2]),
                )
            elif mood == "request":
                text, stars = (
                    rng.choice(REQUEST).format(e=rng.choice(["", "🙏"])),
                    rng.choice([3, 4]),
                )
            else:
                text, stars = rng.choice(NEUTRAL), 3
            day = rng.randint(1, 28)
            month = rng.randint(1, 12)
            rows.append(
                {
                    "review_id": f"R{len(rows):05d}",
                    "customer_id": cid,
                    "review": text.strip(),
                    "rating": stars,
                    "date": f"2025-{month:02d}-{day:02d}",
                }
            )
    return pd.DataFrame(rows)


END_DATE = dt.date(2025, 12, 31)


def _vnd(amount: float) -> str:
    return f"{int(round(amount, -3)):,}".replace(",", ".") + " ₫"


def make_orders(
    reviews: pd.DataFrame, extra_customers: int = 30, seed: int = 11
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Orders and events for the reviewers and ``extra_customers`` silent buyers."""
    rng = random.Random(seed)
    ids = list(dict.fromkeys(reviews["customer_id"]))
    start = len(ids)
    ids += [f"C{start + k:04d}" for k in range(extra_customers)]
    orders, events = [], []
    for cid in ids:
        kind = rng.choices(["vip", "regular", "one-time"], weights=[0.15, 0.45, 0.40])[0]
        if kind == "vip":
            n, span, lo, hi = rng.randint(8, 20), 365, 1_500_000, 6_000_000
        elif kind == "regular":
            n, span, lo, hi = rng.randint(2, 6), 700, 200_000, 1_500_000
        else:
            n, span, lo, hi = 1, 700, 100_000, 600_000
        for _ in range(n):
            day = END_DATE - dt.timedelta(days=rng.randint(0, span))
            date = (
                day.strftime("%d/%m/%Y") if rng.random() < 0.1 else day.isoformat()
            )  # a messy export
            status = "cancelled" if rng.random() < 0.03 else "delivered"
            orders.append(
                {
                    "order_id": f"O{len(orders):06d}",
                    "customer_id": cid,
                    "order_date": date,
                    "amount": _vnd(rng.uniform(lo, hi)),
                    "status": status,
                    "channel": rng.choice(["web", "app", "shopee", "store"]),
                    "items": rng.randint(1, 4),
                }
            )
        open_p = {"vip": 0.6, "regular": 0.35, "one-time": 0.1}[kind]
        abandon_p = {"vip": 0.15, "regular": 0.35, "one-time": 0.6}[kind]
        for _ in range(rng.randint(6, 18)):
            t = dt.datetime.combine(
                END_DATE - dt.timedelta(days=rng.randint(0, 365)), dt.time(rng.randint(7, 22))
            )
            events.append((cid, "email_send", t))
            if rng.random() < open_p:
                events.append((cid, "email_open", t + dt.timedelta(hours=2)))
                if rng.random() < 0.4:
                    events.append((cid, "click", t + dt.timedelta(hours=2, minutes=1)))
        for _ in range({"vip": 30, "regular": 10, "one-time": 3}[kind] + rng.randint(0, 5)):
            t = dt.datetime.combine(
                END_DATE - dt.timedelta(days=rng.randint(0, 365)), dt.time(rng.randint(7, 22))
            )
            events.append((cid, "session", t))
            if rng.random() < 0.3:
                events.append((cid, "cart_add", t + dt.timedelta(minutes=5)))
                if rng.random() < abandon_p:
                    events.append((cid, "cart_abandon", t + dt.timedelta(minutes=30)))
    ev = pd.DataFrame(events, columns=["customer_id", "event_type", "time"])
    ev = ev.sort_values(["time", "customer_id"], kind="stable").reset_index(drop=True)
    ev["timestamp"] = (ev["time"] - dt.datetime(1970, 1, 1)).dt.total_seconds().astype("int64")
    return pd.DataFrame(orders), ev[["customer_id", "event_type", "timestamp"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent.parent / "examples")
    parser.add_argument("--customers", type=int, default=120)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    reviews = make_reviews(args.customers, args.seed)
    reviews.to_csv(args.out_dir / "reviews.csv", index=False)
    print(f"wrote {len(reviews)} reviews to {args.out_dir / 'reviews.csv'}")
    orders, events = make_orders(reviews, seed=args.seed + 4)
    orders.to_csv(args.out_dir / "orders.csv", index=False)
    events.to_csv(args.out_dir / "events.csv", index=False)
    print(f"wrote {len(orders)} orders and {len(events)} events to {args.out_dir}")


if __name__ == "__main__":
    main()

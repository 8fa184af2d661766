"""Generate the bundled example in ``examples/`` (synthetic; no copy of any real corpus).

The reviews are written from templates in Vietnamese (with and without diacritics, teencode),
English and Portuguese, with emoji, so the example exercises what real CX data looks like:
satisfied customers, disappointed ones, and customers asking for an improvement. Customers get
ids so the behaviour issue's orders and events can join on them.

    python scripts/make_example.py            # writes examples/reviews.csv
"""

from __future__ import annotations

import argparse
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


if __name__ == "__main__":
    main()

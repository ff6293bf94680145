"""A spread subset of a flat segmentation set: every k-th row, images and masks copied, labels.csv rewritten."""

import csv

from PIL import Image

from sonofm.data.subset import copy_flat_subset


def test_every_kth_row_is_copied_with_its_image_and_mask(tmp_path):
    source = tmp_path / "set"
    for folder in ("images", "masks"):
        (source / folder).mkdir(parents=True)
    names = [f"case{number}" for number in range(10)]
    for number, name in enumerate(names):
        Image.new("L", (4, 4), number).save(source / "images" / f"{name}.png")
        Image.new("L", (4, 4), 1).save(source / "masks" / f"{name}.png")
    with (source / "labels.csv").open("w", newline="") as handle:
        handle.write("name,group\n" + "".join(f"{name},g{number // 2}\n" for number, name in enumerate(names)))

    target = copy_flat_subset(source, tmp_path / "subset", 4)
    with (target / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == ["case0", "case2", "case4", "case6"]  # every 10 // 4 = 2nd row
    assert rows[1]["group"] == "g1"
    assert sorted(path.name for path in (target / "images").iterdir()) == [f"{row['name']}.png" for row in rows]
    assert Image.open(target / "images" / "case6.png").getpixel((0, 0)) == 6
    assert len(list((target / "masks").iterdir())) == 4

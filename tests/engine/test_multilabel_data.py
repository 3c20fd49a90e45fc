"""Multi-label data: labels.csv folders and zips, Hub list columns, checks and warnings, the label report and the
iterative stratified holdout."""
import zipfile

import numpy as np
import pytest
from PIL import Image

from engine import data, folders, labelled
from engine.errors import UserError
from engine.labelled import LabelledImages
from tests.engine.hub_standin import make_repo, make_split, seed_cache

# 12 images over 3 labels: every label on 6 or more images, two images with two labels, one with none
ROWS = [("a/1.png", "cat"), ("a/2.png", "cat dog"), ("a/3.png", "dog"), ("b/4.png", "emu"), ("b/5.png", "cat;emu"),
        ("b/6.png", "dog"), ("7.png", "cat"), ("8.png", "emu dog"), ("9.png", "emu"), ("10.png", "cat"),
        ("11.png", ""), ("12.png", "dog emu cat")]
LABELS = ["cat", "dog", "emu"]


def png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)


def make_folder(root, rows=ROWS, csv_text=None, images=None):
    """Images for every row (or those named by `images`) and a labels.csv (`csv_text`, or the list form of rows)."""
    for k, path in enumerate(images if images is not None else [p for p, _ in rows]):
        png(root / path, k)
    text = csv_text if csv_text is not None else "image,labels\n" + "".join(f"{p},{labels}\n" for p, labels in rows)
    (root / "labels.csv").write_text(text, encoding="utf-8")
    return root


def label_sets(ds):
    return {ds.name(i): {ds.class_names[c] for c in ds.labels[i]} for i in range(len(ds))}


def expected():
    return {p: set(labels.replace(";", " ").split()) for p, labels in ROWS}


def test_list_form_loads_as_multi_label(tmp_path):
    ds = data.load(str(make_folder(tmp_path / "pets")))
    assert ds.multi_label and ds.class_names == LABELS and len(ds) == 12
    assert label_sets(ds) == expected()
    assert all(list(y) == sorted(y) and isinstance(y, tuple) for y in ds.labels)
    assert ds.counts() == {"cat": 6, "dog": 5, "emu": 5} and ds.folder == str(tmp_path / "pets")
    assert ds.origin == dict(source=str(tmp_path / "pets"), split=None)
    kinds = [w.kind for w in ds.warnings]
    assert kinds == [labelled.NO_LABEL] and ds.warnings[0].numbers == {"images": 1}


def test_flag_form_and_a_wrapping_folder(tmp_path):
    rows = "".join(f"{p},{int('cat' in ls)},{int('dog' in ls)},{int('emu' in ls)}\n" for p, ls in ROWS)
    root = make_folder(tmp_path / "outer" / "pets", csv_text="image,cat,dog,emu\n" + rows)
    ds = data.load(str(tmp_path / "outer"))
    assert ds.multi_label and ds.class_names == LABELS and label_sets(ds) == expected() and ds.folder == str(root)


def test_csv_wins_over_class_folders_and_zip_round_trip(tmp_path):
    root = make_folder(tmp_path / "pets", [(f"cats/{p}", ls) for p, ls in ROWS])  # folders named like one class
    ds = data.load(str(root))
    assert ds.multi_label and ds.class_names == LABELS
    zipped = tmp_path / "pets.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for f in sorted(root.rglob("*")):
            zf.write(f, f"pets/{f.relative_to(root)}")
    from_zip = data.load(str(zipped))
    assert from_zip.multi_label and label_sets(from_zip) == label_sets(ds) and from_zip.source == str(zipped)
    written = data.load(str(folders.write_zip(ds, tmp_path / "again.zip")))  # written back as labels.csv
    assert written.multi_label and sorted(map(sorted, label_sets(written).values())) == \
        sorted(map(sorted, label_sets(ds).values()))


def test_label_names_with_spaces_and_a_bom(tmp_path):
    rows = [("1.png", "long sleeve;red"), ("2.png", "red"), ("3.png", "long sleeve;")]
    root = make_folder(tmp_path / "c", rows, csv_text="\ufeffimage,labels\n" + "".join(f"{p},{ls}\n" for p, ls in rows))
    ds = folders.load_folder(root)
    assert ds.class_names == ["long sleeve", "red"] and label_sets(ds)["3.png"] == {"long sleeve"}


def test_preview_shows_every_label_and_fingerprint_sees_label_sets(tmp_path):
    ds = data.load(str(make_folder(tmp_path / "pets")))
    shown = data.preview(ds, per_class=1, size=16)
    captions = [c for _, c in shown]
    assert all(arr.shape == (16, 16, 3) for arr, _ in shown)
    assert {name for c in captions for name in c.split(", ")} == set(LABELS)
    idx = list(range(len(ds)))
    augmented = data.augmentation_preview(ds, "none", 16, n=2, copies=1)
    assert len(augmented) == 4 and {c.split(": ")[0] for _, c in augmented} <= {labelled.caption(ds, i) for i in idx}
    before = data.fingerprint(ds, idx)
    ds.labels[1] = (0,)  # "cat dog" becomes "cat"
    assert data.fingerprint(ds, idx) != before and len(before) == 12


def test_missing_and_unlisted_images_are_skipped_and_named(tmp_path):
    root = make_folder(tmp_path / "pets", images=[p for p, _ in ROWS if p != "9.png"] + ["extra/x.png"])
    (root / "notes.txt").write_text("not an image")
    ds = data.load(str(root))
    assert len(ds) == 11 and "9.png" not in label_sets(ds)
    text = " | ".join(ds.warnings)
    assert "Skipped 1 rows of labels.csv naming images that do not exist: row 10: 9.png." in text
    assert "Skipped 1 images that labels.csv does not list: extra/x.png." in text
    assert "notes.txt" not in text and "extra/x.png" in ds.skipped


def test_unreadable_image_named_in_the_csv_is_skipped(tmp_path):
    root = make_folder(tmp_path / "pets")
    (root / "7.png").write_bytes(b"not a png")
    ds = data.load(str(root))
    assert len(ds) == 11 and "7.png" in ds.skipped and any("unreadable images: 7.png" in w for w in ds.warnings)


def bad(tmp_path, csv_text, images=("1.png", "2.png", "3.png"), raw=None):
    root = tmp_path / "bad"
    for k, p in enumerate(images):
        png(root / p, k)
    if raw is not None:
        (root / "labels.csv").write_bytes(raw)
    else:
        (root / "labels.csv").write_text(csv_text, encoding="utf-8")
    with pytest.raises(UserError) as error:
        data.load(str(root))
    return str(error.value)


def test_bad_csvs_are_refused_naming_the_row_or_file(tmp_path):
    assert "None of the 2 images named in labels.csv exist" in bad(tmp_path, "image,labels\nx.png,a\ny.png,b\n")
    assert "row 3: y.png" in bad(tmp_path, "image,labels\nx.png,a\ny.png,b\n")
    assert bad(tmp_path, "image,labels\n1.png,\n2.png,\n").startswith("Every image in labels.csv has an empty label set")
    assert "row 3 has 3 columns; the header has 2" in bad(tmp_path, "image,labels\n1.png,a\n2.png,a,b\n")
    message = bad(tmp_path, "image,cat,dog\n1.png,1,0\n2.png,0,yes\n")
    assert "row 3, column 'dog': 'yes' is not 0 or 1" in message
    assert "row 3 has no image path" in bad(tmp_path, "image,labels\n1.png,a\n,b\n")
    assert "rows 2 and 4 both name 1.png" in bad(tmp_path, "image,labels\n1.png,a\n2.png,b\n./1.png,b\n")
    assert "row 2: '../1.png' leads outside the folder" in bad(tmp_path, "image,labels\n../1.png,a\n")
    assert "row 3: '/etc/x.png' leads outside the folder" in bad(tmp_path, "image,labels\n1.png,a\n/etc/x.png,b\n")
    assert "labels.csv is not UTF-8 text" in bad(tmp_path, None, raw="image,labels\n1.png,caf\xe9\n".encode("latin-1"))
    message = bad(tmp_path, "file_name,tags\n1.png,a\n")
    assert "no 'image' column. Its header: file_name, tags." in message
    assert "Found only one label (a)" in bad(tmp_path, "image,labels\n1.png,a\n2.png,a\n")
    with pytest.raises(UserError, match="labelled by labels.csv, which has no splits: there is no split 'train'"):
        data.load(str(make_folder(tmp_path / "pets")), split="train")


def test_one_label_each_is_kept_multi_label_with_a_warning(tmp_path):
    rows = [(f"{k}.png", "cat" if k % 2 else "dog") for k in range(12)]
    ds = data.load(str(make_folder(tmp_path / "c", rows)))
    assert ds.multi_label and [w.kind for w in ds.warnings] == [labelled.ONE_LABEL_EACH]
    assert "a folder per class would train a single-label classifier" in ds.warnings[0]


def test_validate_warns_about_rare_labels_labels_everywhere_and_training_gaps():
    names = ["a", "b", "c", "d"]
    labels = [(0, 1)] * 6 + [(0, 2)] * 2 + [(0, 1, 3)]
    ds = labelled.validate(LabelledImages(names, [None] * 9, labels, "x", multi_label=True,
                                          splits={"train": list(range(8)), "validation": [8]}))
    by_kind = {w.kind: w for w in ds.warnings}
    assert by_kind[labelled.RARE_LABELS].startswith("Labels on fewer than 5 images") and "c, d" in by_kind[labelled.RARE_LABELS]
    assert by_kind[labelled.LABEL_EVERYWHERE].endswith(": a.")
    assert by_kind[labelled.NO_TRAINING_IMAGES].endswith(": d.")
    with pytest.raises(UserError, match="None of the 2 images has a label"):
        labelled.validate(LabelledImages(names, [None] * 2, [(), ()], "x", multi_label=True))
    single = labelled.validate(LabelledImages(["x", "y"], [None] * 4, [0, 0, 1, 1], "x"))
    assert [w.kind for w in single.warnings] == []  # single-label data: as before


def test_label_report():
    ds = LabelledImages(["a", "b", "c"], [None] * 6, [(0, 1), (0,), (0, 1), (), (2,), (0, 1, 2)], "x", multi_label=True)
    report = labelled.label_report(ds)
    assert report["counts"] == {"a": 4, "b": 3, "c": 2} and report["no_label"] == 1 and report["images"] == 6
    assert report["co_occurrence"] == [[4, 3, 1], [3, 3, 1], [1, 1, 2]]
    assert report["labels_per_image"] == {0: 1, 1: 2, 2: 2, 3: 1}
    assert report["rare"] == ["a", "b", "c"] and report["multi_label"] is True


def generated_label_sets(n=400, n_labels=14, seed=0):
    """Label frequencies falling off fast, plus labels on exactly 2 and 3 images."""
    rng = np.random.default_rng(seed)
    p = 0.6 ** np.arange(n_labels - 2)
    sets = [tuple(sorted(set(rng.choice(n_labels - 2, rng.integers(0, 4), p=p / p.sum()).tolist()))) for _ in range(n)]
    for k, extra in enumerate([n_labels - 2] * 2 + [n_labels - 1] * 3):
        sets[k] = tuple(sorted(set(sets[k]) | {extra}))
    return sets


def test_iterative_holdout_puts_every_label_on_both_sides():
    labels, n_labels = generated_label_sets(), 14
    ds = LabelledImages([f"l{c}" for c in range(n_labels)], [None] * len(labels), labels, "x", multi_label=True)
    train, val = data.holdout(ds, 0.2, seed=3)
    assert sorted(train + val) == list(range(len(labels))) and abs(len(val) / len(labels) - 0.2) < 0.02
    per_label = np.bincount([c for y in labels for c in y], minlength=n_labels)
    for side in (train, val):
        seen = {c for i in side for c in labels[i]}
        assert all(c in seen for c in range(n_labels) if per_label[c] >= 2)
    in_val = np.bincount([c for i in val for c in labels[i]], minlength=n_labels)
    common = per_label >= 40
    assert np.all(np.abs(in_val[common] / per_label[common] - 0.2) < 0.06)  # each label near the fraction
    assert data.holdout(ds, 0.2, seed=3) == (train, val) and data.holdout(ds, 0.2, seed=4) != (train, val)
    assert data.holdout_description(ds, 0.2, 3) == dict(kind="iterative_stratified", val_fraction=0.2, seed=3, note=(
        "iterative stratification (Sechidis et al. 2011) of the label sets"))


# ---------------------------------------------------------------------------------------------- Hub lists


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """`someone/tags`: a train and a validation split with a list-of-ClassLabel column `labels`, and a list of
    strings `words`, a list of whole numbers `codes` and a list of decimals `scores` beside it."""
    from datasets import ClassLabel, Features, Image, List, Value

    features = Features({"img": Image(), "labels": List(ClassLabel(names=LABELS)), "words": List(Value("string")),
                         "codes": List(Value("int64")), "scores": List(Value("float32"))})
    train_sets = [[0], [0, 1], [1], [2], [0, 2], [1], [0], [1, 2], [2], [0], [], [2, 1, 0]]
    val_sets = [[0, 1], [2], [1], [0]]

    def split(sets, seed):
        return make_split(sets, features, label_column="labels", seed=seed,
                          extra=dict(words=[[LABELS[c] for c in s] for s in sets], codes=[[c * 5 for c in s] for s in sets],
                                     scores=[[0.5] for _ in sets]))

    repo = make_repo(tmp_path_factory.mktemp("hub") / "tags", dict(train=split(train_sets, 1), validation=split(val_sets, 2)))
    cache = tmp_path_factory.mktemp("hf-cache")
    seed_cache(repo, "someone/tags", cache)
    return cache


@pytest.fixture
def offline_hub(hub_cache, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hub_cache)


def test_hub_list_of_class_labels_is_multi_label_with_its_own_split(offline_hub):
    ds = data.load("someone/tags")
    assert ds.multi_label and ds.class_names == LABELS and ds.origin["label_column"] == "labels"
    assert ds.labels[:3] == [(0,), (0, 1), (1,)] and ds.labels[10] == () and ds.labels[11] == (0, 1, 2)
    assert ds.has_own_split() and len(ds.splits["validation"]) == 4
    tensors, bad_images = data.decode(ds, ds.splits["validation"], 16)
    assert not bad_images and tensors.y.tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert labelled.caption(ds, 1) == "cat, dog" and ds.name(1) == "train row 1"


def test_hub_lists_of_strings_and_numbers(offline_hub):
    words = data.load("someone/tags", label_column="words")
    assert words.multi_label and words.class_names == LABELS and words.labels == data.load("someone/tags").labels
    codes = data.load("someone/tags", label_column="codes")
    assert codes.class_names == ["0", "5", "10"] and codes.labels[1] == (0, 1)
    with pytest.raises(UserError, match="'scores' holds lists of decimal numbers, not lists of labels"):
        data.load("someone/tags", label_column="scores")


def test_hub_lists_stream_with_a_cap_per_label(offline_hub):
    ds = data.load("someone/tags", max_per_class=2)
    train = [ds.labels[i] for i in ds.splits["train"]]
    assert train == [(0,), (0, 1), (1,), (2,), (0, 2)]  # each label reaches 2, then reading stops

"""Warnings about a dataset are data: the engine says what each is about (kind, numbers, the files it names) and the
Data tab's report acts on that, never on the words, which people still read unchanged."""
import copy
import pickle

from PIL import Image

from demo import data_report
from engine import data as data_lib
from engine import labelled
from engine.labelled import DataWarning, LabelledImages


def dataset(counts: list[int], warnings=(), skipped=()) -> LabelledImages:
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    return LabelledImages([f"c{i}" for i in range(len(counts))], [None] * len(labels), labels, "t",
                          warnings=list(warnings), skipped=list(skipped))


def test_a_warning_is_its_sentence_with_its_kind_and_numbers():
    w = DataWarning(labelled.IMBALANCED, "Imbalanced classes: the largest has 30 images, the smallest 2.",
                    dict(largest=30, smallest=2))
    assert w == "Imbalanced classes: the largest has 30 images, the smallest 2." and w.message == str(w)
    assert (w.kind, w.numbers, w.files) == ("imbalanced", {"largest": 30, "smallest": 2}, ())
    for copied in (pickle.loads(pickle.dumps(w)), copy.deepcopy(w)):  # a ZeroGPU call pickles the decoded data
        assert type(copied) is DataWarning and copied == w and (copied.kind, copied.numbers) == (w.kind, w.numbers)


def test_the_engine_says_what_its_warnings_are_about():
    data = labelled.validate(dataset([30, 2, 1]))
    by_kind = {w.kind: w for w in data.warnings}
    assert by_kind["imbalanced"].numbers == {"largest": 30, "smallest": 1}
    assert by_kind["imbalanced"].startswith("Imbalanced classes: the largest has 30 images")  # the words people read
    assert by_kind["tiny_classes"].numbers == {"classes": 1} and "c2" in by_kind["tiny_classes"]
    splits, notes = labelled.own_splits({"train": [0], "test": [1]})
    assert [n.kind for n in notes] == ["splits"] and "test split is used for validation" in notes[0]


def test_unreadable_images_found_while_decoding_are_named_as_files(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 90, 0 if name == "a" else 200)).save(tmp_path / name / f"{i}.png")
    ds = data_lib.load_folder(tmp_path)
    (tmp_path / "a" / "2.png").write_bytes(b"broken since it was listed")
    _, _, bad, warnings = data_lib.decode_train_val(ds, *data_lib.holdout(ds), 8)
    (skipped,) = [w for w in warnings if w.kind == labelled.SKIPPED]
    assert skipped.files == tuple(bad) == ("a/2.png",) and skipped.numbers == {"files": 1}
    assert skipped in ds.warnings  # the Data tab sees it too


def test_the_report_reads_kinds_not_words():
    # the engine warned about imbalance (kind), in any words: the report adds no second, stricter warning
    said = DataWarning(labelled.IMBALANCED, "Some classes are much bigger than others.", dict(largest=9, smallest=3))
    assert data_report.warnings(dataset([9, 3], [said])) == ["Some classes are much bigger than others."]
    # words that look like one, of another kind: the report still says it
    lookalike = DataWarning(labelled.SPLITS, "Imbalanced classes? No: this is about splits.")
    shown = data_report.warnings(dataset([9, 3], [lookalike]))
    assert shown[0] == lookalike and shown[1].startswith("Imbalanced classes: c0 has 9 images, c1 only 3 (3.0x)")
    # a skipped file is listed unless a warning names it (by its files, not by its text)
    named = DataWarning(labelled.SKIPPED, "Skipped 1 unreadable images: a/1.png.", dict(files=1), files=["a/1.png"])
    shown = data_report.warnings(dataset([3, 3], [named], skipped=["a/1.png", "notes.txt"]))
    assert shown == ["Skipped 1 unreadable images: a/1.png.", "Skipped files: `notes.txt`."]
    (own,) = [w for w in data_report.imbalance(dataset([9, 3]))]
    assert own.kind == labelled.IMBALANCED and own.numbers == {"largest": 9, "smallest": 3}

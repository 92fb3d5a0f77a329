"""The one linear probe: how much of a frozen embedding's information a linear classifier can read.

Every stage and benchmark that scores frozen embeddings (encoders, the demo, alignment baselines) calls
:func:`linear_probe`, so their figures are comparable: standardise on the training rows, multinomial
logistic regression with balanced class weights (traffic classes are very unequal: a flood has thousands
of flows, a scan dozens), macro-F1 over the classes present in the test rows, plus accuracy.
Train and test rows must come from different flows (the workspace's splits); the probe cannot check that.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from packetclip.errors import PacketClipError


@dataclass(frozen=True)
class ProbeScore:
    macro_f1: float
    accuracy: float
    n_train: int
    n_test: int
    n_classes: int
    macro_recall: float = float("nan")   # macro top-1 (balanced accuracy), what zero-shot results are compared with

    def to_dict(self) -> dict:
        return asdict(self)


def linear_probe(train_X, train_y, test_X, test_y, seed: int = 0, *, max_iter: int = 3000,
                 C: float = 1.0) -> ProbeScore:
    """Fit standardise + logistic regression on ``train_*``; macro-F1 and accuracy on ``test_*``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_X, test_X = np.asarray(train_X, np.float64), np.asarray(test_X, np.float64)
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    if train_X.ndim != 2 or test_X.ndim != 2 or train_X.shape[1] != test_X.shape[1]:
        raise PacketClipError(f"probe needs 2-D features of one width, got {train_X.shape} and {test_X.shape}")
    if len(train_X) != len(train_y) or len(test_X) != len(test_y):
        raise PacketClipError("probe: features and labels differ in length")
    if len(test_y) == 0:
        raise PacketClipError("probe: no test rows")
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise PacketClipError(f"probe needs at least 2 classes in the training rows, got {len(classes)}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=max_iter, C=C,
                                                             random_state=seed))
    clf.fit(np.nan_to_num(train_X), train_y)
    return score_predictions(test_y, clf.predict(np.nan_to_num(test_X)), n_train=len(train_y), n_classes=len(classes))


def score_predictions(test_y, predicted, *, n_train: int, n_classes: int) -> ProbeScore:
    """Macro-F1 (over the classes present in ``test_y``), accuracy and macro recall of predicted labels."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    test_y, predicted = np.asarray(test_y), np.asarray(predicted)
    labels = sorted(set(test_y.tolist()))
    return ProbeScore(
        macro_f1=float(f1_score(test_y, predicted, labels=labels, average="macro", zero_division=0)),
        accuracy=float(accuracy_score(test_y, predicted)),
        n_train=int(n_train), n_test=int(len(test_y)), n_classes=int(n_classes),
        macro_recall=float(recall_score(test_y, predicted, labels=labels, average="macro", zero_division=0)),
    )

"""Continual (lifelong) learning pieces: task splits, multi-head outputs, the accuracy-matrix metrics.

A benchmark is a base dataset cut into a sequence of tasks, each a disjoint set of classes
(split-CIFAR-10: 5 tasks of 2 classes; split-CIFAR-100: 20 tasks of 5). The class-to-task
assignment is a permutation of the classes drawn from a seed, so a seed fixes both the split and
the order of the tasks; a shorter sequence (fewer tasks) is a prefix of the full one.

R is the T x T accuracy matrix: R[i, j] = test accuracy (%) on task j after training on tasks
0..i. The metrics (Chaudhry et al. 2018 for A and F; Riemer et al. 2019 for LA), the field's
standard definitions, since the paper's exact protocol is not published:
    average accuracy  A  = mean_j R[T-1, j]
    forgetting        F  = mean_{j < T-1} (max_{l < T-1} R[l, j] - R[T-1, j])
    learning accuracy LA = mean_j R[j, j]
"""
from dataclasses import dataclass

import numpy as np
import torch

import data
from training import records

BENCHMARKS = {
    # datasets: the base datasets the benchmark accepts (the first is the default)
    "split_cifar10": dict(datasets=("CIFAR10", "CIFAR10_sample"), num_tasks=5, classes_per_task=2),
    "split_cifar100": dict(datasets=("CIFAR100",), num_tasks=20, classes_per_task=5),
}


def benchmark_name(text):
    key = str(text).lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {text!r}; available: {', '.join(BENCHMARKS)}")
    return key


def task_classes(num_classes, classes_per_task, num_tasks, seed):
    """The classes of each task: a seeded permutation of range(num_classes) cut into groups of
    classes_per_task, the first num_tasks of them (all classes when num_tasks * classes_per_task
    == num_classes). Disjoint by construction. ValueError if the tasks need more classes."""
    if classes_per_task < 2:
        raise ValueError(f"a task needs at least 2 classes, got {classes_per_task}")
    if num_tasks * classes_per_task > num_classes:
        raise ValueError(f"{num_tasks} tasks of {classes_per_task} classes need {num_tasks * classes_per_task} "
                         f"classes, the dataset has {num_classes} (at most {num_classes // classes_per_task} tasks)")
    generator = np.random.default_rng(np.random.SeedSequence([seed, num_classes, classes_per_task]))
    order = generator.permutation(num_classes)
    return [sorted(int(c) for c in order[t * classes_per_task:(t + 1) * classes_per_task]) for t in range(num_tasks)]


@dataclass
class Task:
    index: int
    classes: list           # global class indices of this task, sorted
    dataset: data.Dataset   # this task's images; labels local (0..c-1) for multi-head, global for single-head


def split_dataset(dataset, classes_per_task, multi_head, train_per_task=None, test_per_task=None):
    """One data.Dataset per task holding that task's images in file order, or with
    train_per_task / test_per_task only that many, class-balanced (the first images of each
    class: CIFAR-10's test files are sorted by class, so "the first N" would be one class).
    Multi-head: labels become positions in the task's class list; single-head: labels stay
    global. DataError if a subset asks for more images than a class has."""
    tasks = []
    for index, classes in enumerate(classes_per_task):
        parts = {}
        wanted = torch.tensor(classes, device=dataset.train_labels.device)
        for split, limit in (("train", train_per_task), ("test", test_per_task)):
            images, labels = getattr(dataset, f"{split}_images"), getattr(dataset, f"{split}_labels")
            if limit is None:
                keep = torch.nonzero(torch.isin(labels, wanted)).flatten()
            else:
                keep = []
                for position, cls in enumerate(classes):  # limit split as evenly as possible
                    quota = limit // len(classes) + (position < limit % len(classes))
                    of_class = torch.nonzero(labels == cls).flatten()
                    if quota > of_class.numel():
                        raise data.DataError(f"--{split}_per_task {limit} needs {quota} {split} images of class "
                                             f"{cls}, {dataset.name} has {of_class.numel()}")
                    keep.append(of_class[:quota])
                keep = torch.cat(keep).sort().values
            task_labels = labels[keep]
            if multi_head:  # global class -> position in the task's class list
                task_labels = torch.searchsorted(wanted, task_labels)
            parts[split] = (images[keep], task_labels)
        tasks.append(Task(index, classes, data.Dataset(
            name=f"{dataset.name}/task{index}", train_images=parts["train"][0], train_labels=parts["train"][1],
            test_images=parts["test"][0], test_labels=parts["test"][1],
            num_classes=len(classes) if multi_head else dataset.num_classes,
            mean=dataset.mean, std=dataset.std)))
    return tasks


class TaskHead:
    """Multi-head output: the model's logits of one task's classes only (task identity known).

    Selecting the task's columns is the same as masking every other logit to -inf: softmax,
    cross-entropy and argmax then see this task's classes only, and the other tasks' rows of
    the output layer get no gradient from this task's loss."""

    def __init__(self, model_forward, classes, device):
        self.model_forward = model_forward
        self.columns = torch.tensor(classes, device=device)

    def __call__(self, inputs):
        return self.model_forward(inputs).index_select(1, self.columns)


# ------------------------------------------------------------------------------------- metrics

def average_accuracy(matrix):
    matrix = np.asarray(matrix, dtype=float)
    return float(matrix[-1].mean())


def forgetting(matrix):
    """Mean over the tasks before the last of (best accuracy before the end - final accuracy);
    None for a single task (nothing can be forgotten)."""
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape[0] < 2:
        return None
    last = matrix.shape[0] - 1
    return float(np.mean([matrix[:last, j].max() - matrix[last, j] for j in range(last)]))


def learning_accuracy(matrix):
    matrix = np.asarray(matrix, dtype=float)
    return float(np.mean([matrix[j, j] for j in range(matrix.shape[0])]))


def matrix_rows_of(rows, epochs_per_task, num_tasks):
    """Rows of R so far, from metrics.csv's rows: every task's accuracy at the last epoch of each finished task."""
    return [[row[records.task_accuracy_column(j)] for j in range(num_tasks)]
            for row in rows if row["task_epoch"] == epochs_per_task]


def sequence_metrics(matrix_rows):
    """A, F, LA from the rows finished so far (rows i = 0..t of R, each of length T): the metrics
    of the sequence of the first t+1 tasks. All None before the first task ends."""
    if not matrix_rows:
        return {"average_accuracy": None, "forgetting": None, "learning_accuracy": None}
    done = len(matrix_rows)
    square = np.asarray(matrix_rows, dtype=float)[:, :done]
    return {"average_accuracy": average_accuracy(square), "forgetting": forgetting(square),
            "learning_accuracy": learning_accuracy(square)}


def sequence_lr_factor(epochs_per_task, num_tasks, schedule, reset, task_decay):
    """LR factor after `epochs_done` epochs of the whole sequence (LambdaLR's last_epoch), in
    closed form so that a resumed run gets the same rates.

    schedule: constant, or cosine to 0. reset (default): the schedule restarts at every task
    (each task starts at --lr); without reset it runs once over all tasks' epochs.
    task_decay: task t's rates are multiplied by task_decay ** t (Mirzadeh et al.'s decay)."""
    import math
    total = epochs_per_task * num_tasks

    def factor(epochs_done):
        task = min(epochs_done // epochs_per_task, num_tasks - 1)
        position, length = (epochs_done - task * epochs_per_task, epochs_per_task) if reset else (epochs_done, total)
        shape = 1.0 if schedule == "constant" else 0.5 * (1.0 + math.cos(math.pi * min(position, length) / length))
        return task_decay ** task * shape
    return factor

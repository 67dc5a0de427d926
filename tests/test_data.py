"""The data pipeline: offline sample, CIFAR batch files, and augmentation vs the authors' transform."""
import os
import pickle

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

import data


@pytest.fixture(scope="module")
def sample():
    return data.load_dataset("CIFAR10_sample", device="cpu")


def coded_images(count):
    """Images whose pixels say where they come from: channel 0 = row + 1, channel 1 = column + 1
    (1..32, never 0, so zero padding is recognisable), channel 2 = 200."""
    span = torch.arange(1, 33, dtype=torch.uint8)
    image = torch.stack([span[:, None].expand(32, 32), span[None, :].expand(32, 32),
                         torch.full((32, 32), 200, dtype=torch.uint8)])
    return image.expand(count, 3, 32, 32).contiguous()


def synthetic_dataset(train_images, test_images=None):
    test_images = train_images[:8] if test_images is None else test_images
    return data.Dataset(name="synthetic", train_images=train_images,
                        train_labels=torch.arange(len(train_images)) % 10,
                        test_images=test_images, test_labels=torch.arange(len(test_images)) % 10,
                        num_classes=10, mean=torch.tensor(data.CIFAR10_MEAN).view(3, 1, 1),
                        std=torch.tensor(data.CIFAR10_STD).view(3, 1, 1))


def unnormalize(inputs):
    mean = torch.tensor(data.CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(data.CIFAR10_STD).view(3, 1, 1)
    return torch.round((inputs * std + mean) * 255).to(torch.int64)


def test_sample_is_small_balanced_and_real():
    assert os.path.getsize(data.SAMPLE_FILE) <= 5 * 1024 * 1024
    dataset = data.load_dataset("cifar10_sample")  # names are case-insensitive
    assert dataset.name == "CIFAR10_sample" and dataset.num_classes == 10
    assert dataset.train_images.shape == (5000, 3, 32, 32) and dataset.train_images.dtype == torch.uint8
    assert dataset.test_images.shape == (1000, 3, 32, 32)
    assert dataset.train_labels.bincount().tolist() == [500] * 10
    assert dataset.test_labels.bincount().tolist() == [100] * 10
    # Real photographs: per-channel means close to CIFAR-10's, plenty of variation.
    means = dataset.train_images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor(data.CIFAR10_MEAN), atol=0.02)
    assert dataset.train_images.float().std() > 40


def test_sample_decoding_matches_pil():
    from PIL import Image
    import io
    with np.load(data.SAMPLE_FILE) as archive:
        blob, offsets = archive["test_jpeg"], archive["test_offsets"]
    decoded = data._decode_jpegs(blob, offsets[:11])
    for i in range(10):
        pil = np.asarray(Image.open(io.BytesIO(blob[offsets[i]:offsets[i + 1]].tobytes())).convert("RGB"))
        difference = np.abs(decoded[i].transpose(1, 2, 0).astype(int) - pil.astype(int))
        assert difference.mean() < 1.0 and difference.max() <= 8  # same JPEG, decoders may round differently


def write_cifar10_folder(root, images_per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (images_per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, images_per_batch).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
        batches[name] = batch
    return batches


def test_cifar_python_layout_is_read_in_order(tmp_path):
    batches = write_cifar10_folder(tmp_path)
    dataset = data.load_dataset("CIFAR10", str(tmp_path), download=False)
    expected = np.concatenate([batches[f"data_batch_{i}"]["data"] for i in range(1, 6)])
    # Rows are channel-planar R, G, B planes of 32 x 32, as in the official files.
    assert torch.equal(dataset.train_images, torch.from_numpy(expected.reshape(-1, 3, 32, 32)))
    assert dataset.train_labels.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    assert torch.equal(dataset.test_images, torch.from_numpy(batches["test_batch"]["data"].reshape(-1, 3, 32, 32)))
    subset = data.load_dataset("CIFAR10", str(tmp_path), download=False, train_subset=7)
    assert torch.equal(subset.train_images, dataset.train_images[:7])
    with pytest.raises(data.DataError, match="train_subset"):
        data.load_dataset("CIFAR10", str(tmp_path), download=False, train_subset=21)


def test_corrupt_batch_file_is_a_data_error(tmp_path):
    write_cifar10_folder(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(data.DataError, match="data_batch_3"):
        data.load_dataset("CIFAR10", str(tmp_path), download=False)


def test_missing_dataset_without_download_says_where_to_put_it(tmp_path):
    with pytest.raises(data.DataError) as info:
        data.load_dataset("CIFAR100", str(tmp_path / "nowhere"), download=False)
    assert "cifar-100-python" in str(info.value) and "cs.toronto.edu" in str(info.value)


def test_failed_download_fails_fast_with_instructions(tmp_path, monkeypatch):
    # Port 9 on localhost refuses connections: an offline machine, without waiting for a timeout.
    monkeypatch.setitem(data.DATASETS["CIFAR100"], "url", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    with pytest.raises(data.DataError) as info:
        data.load_dataset("CIFAR100", str(tmp_path), download=True)
    message = str(info.value)
    assert "download failed" in message and str(tmp_path) in message and "eb9058c3a382ffc7106e4002c42a8d85" in message
    assert "\n" not in message


def test_unknown_dataset():
    with pytest.raises(ValueError, match="available"):
        data.canonical_dataset_name("MNIST")


def test_augmentation_equals_torchvision_for_the_same_draw(sample):
    """For a given crop corner and flip, our batched gather is exactly torchvision's
    pad(4, fill=0) + crop + hflip on the uint8 image (i.e. before ToTensor/Normalize)."""
    images = sample.train_images[:64]
    generator = torch.Generator().manual_seed(1)
    offsets = torch.randint(0, 9, (64, 2), generator=generator)
    flips = torch.rand(64, generator=generator) < 0.5
    ours = data.augment_batch(images, offsets, flips)
    for i in range(64):
        reference = TF.crop(TF.pad(images[i], [4], fill=0), int(offsets[i, 0]), int(offsets[i, 1]), 32, 32)
        if flips[i]:
            reference = TF.hflip(reference)
        assert torch.equal(ours[i], reference)


def test_augmentation_distribution_matches_random_crop_and_flip():
    """Crop corners uniform over 0..8 in each axis (independently), flips with rate 1/2, padding
    black before normalisation: recovered from the pixels of one full training epoch."""
    count = 18000
    dataset = synthetic_dataset(coded_images(count))
    inputs = torch.cat([x for x, _ in data.train_batches(dataset, 1000, seed=3, epoch=1)])
    assert inputs.shape == (count, 3, 32, 32) and inputs.dtype == torch.float32
    raw = unnormalize(inputs)
    # The centre pixel is always inside the image: it tells the source row/column.
    row_source, column_source = raw[:, 0, 16, 16] - 1, raw[:, 1, 16, 16] - 1
    flipped = raw[:, 1, 16, 17] < raw[:, 1, 16, 16]
    top = row_source - 16 + 4
    left = torch.where(flipped, column_source - 15 + 4, column_source - 16 + 4)
    assert top.min() == 0 and top.max() == 8 and left.min() == 0 and left.max() == 8

    def within(counts, probability, sigmas=5.0):
        expected = count * probability
        return (counts.float() - expected).abs().max() < sigmas * (expected * (1 - probability)) ** 0.5

    assert within(torch.bincount(top, minlength=9), 1 / 9)
    assert within(torch.bincount(left, minlength=9), 1 / 9)
    assert within(torch.bincount(top * 9 + left, minlength=81), 1 / 81)  # independent axes
    assert abs(flipped.float().mean() - 0.5) < 5 * (0.25 / count) ** 0.5
    # Each pixel is the padded image's pixel at (top + i, left + j) (mirrored columns if flipped).
    span = torch.arange(32)
    expected_rows = top[:, None] + span - 4 + 1
    expected_cols = left[:, None] + torch.where(flipped[:, None], 31 - span, span) - 4 + 1
    inside_rows = (expected_rows >= 1) & (expected_rows <= 32)
    inside_cols = (expected_cols >= 1) & (expected_cols <= 32)
    inside = inside_rows[:, :, None] & inside_cols[:, None, :]
    assert torch.equal(raw[:, 0], torch.where(inside, expected_rows[:, :, None].expand(-1, -1, 32), 0))
    assert torch.equal(raw[:, 1], torch.where(inside, expected_cols[:, None, :].expand(-1, 32, -1), 0))
    # Padding is black (0) before normalisation, i.e. exactly -mean/std after it.
    padding_value = (-torch.tensor(data.CIFAR10_MEAN) / torch.tensor(data.CIFAR10_STD)).view(1, 3, 1)
    padded = inputs.permute(0, 2, 3, 1)[~inside]  # P x 3
    assert padded.shape[0] > 0
    assert torch.allclose(padded, padding_value.view(1, 3), atol=1e-6)


def test_epoch_randomness_is_deterministic_per_seed_and_epoch(sample):
    def epoch_inputs(seed, epoch):
        return [(x.clone(), y.clone()) for x, y in data.train_batches(sample, 500, seed, epoch)]

    first = epoch_inputs(0, 1)
    again = epoch_inputs(0, 1)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], epoch_inputs(0, 2)[0][0])
    assert not torch.equal(first[0][0], epoch_inputs(1, 1)[0][0])
    # A permutation: every training image once per epoch, labels travel with their images.
    permutation, _, _ = data.epoch_randomness(5000, 0, 1)
    assert sorted(permutation.tolist()) == list(range(5000))
    labels = torch.cat([y for _, y in first])
    assert torch.equal(labels, sample.train_labels[permutation])


def test_no_augment_yields_the_stored_images_in_the_same_order(sample):
    """--no-augment: the permutation of the seed and epoch, each image only normalised (no crop, no flip)."""
    permutation, _, _ = data.epoch_randomness(5000, 3, 2)
    plain = [(x.clone(), y.clone()) for x, y in data.train_batches(sample, 500, 3, 2, augment=False)]
    augmented = [y for _, y in data.train_batches(sample, 500, 3, 2)]
    inputs, labels = torch.cat([x for x, _ in plain]), torch.cat([y for _, y in plain])
    reference = TF.normalize(sample.train_images[permutation].float() / 255, data.CIFAR10_MEAN, data.CIFAR10_STD)
    assert torch.allclose(inputs, reference, atol=1e-6)
    assert torch.equal(labels, sample.train_labels[permutation])
    assert torch.equal(labels, torch.cat(augmented))  # the same data order as with augmentation


def test_last_partial_batch_is_kept_but_not_a_single_image():
    dataset = synthetic_dataset(coded_images(10))
    assert [len(y) for _, y in data.train_batches(dataset, 4, 0, 1)] == [4, 4, 2]
    assert data.num_train_batches(dataset, 4) == 3
    dataset = synthetic_dataset(coded_images(9))
    assert [len(y) for _, y in data.train_batches(dataset, 4, 0, 1)] == [4, 4]  # BatchNorm needs 2+
    assert data.num_train_batches(dataset, 4) == 2


def test_test_images_are_only_normalized(sample):
    inputs, labels = zip(*data.test_batches(sample, 300))
    inputs, labels = torch.cat(inputs), torch.cat(labels)
    reference = TF.normalize(sample.test_images.float() / 255, data.CIFAR10_MEAN, data.CIFAR10_STD)
    assert torch.allclose(inputs, reference, atol=1e-6)
    assert torch.equal(labels, sample.test_labels)
    assert [len(y) for _, y in data.test_batches(sample, 300)] == [300, 300, 300, 100]
    channels_last = next(data.test_batches(sample, 300, channels_last=True))[0]
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


def write_cifar100_folder(root, images=6):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        batch = {"data": rng.integers(0, 256, (images, 3072), dtype=np.uint8),
                 "fine_labels": rng.integers(0, 100, images).tolist(),
                 "coarse_labels": rng.integers(0, 20, images).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder


def test_cifar100_uses_fine_labels(tmp_path):
    folder = write_cifar100_folder(tmp_path)
    with open(folder / "train", "rb") as f:
        expected = pickle.load(f)["fine_labels"]
    dataset = data.load_dataset("CIFAR100", str(tmp_path), download=False)
    assert dataset.num_classes == 100 and dataset.train_labels.tolist() == expected
    assert torch.allclose(dataset.mean.flatten(), torch.tensor(data.CIFAR100_MEAN))


def test_archive_in_data_dir_is_verified_and_extracted_without_network(tmp_path, monkeypatch):
    import hashlib
    import tarfile
    staging = tmp_path / "staging"
    write_cifar100_folder(staging)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = data_dir / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-100-python", arcname="cifar-100-python")
    monkeypatch.setitem(data.DATASETS["CIFAR100"], "url", "http://127.0.0.1:9/cifar-100-python.tar.gz")
    monkeypatch.setitem(data.DATASETS["CIFAR100"], "md5", hashlib.md5(archive.read_bytes()).hexdigest())
    dataset = data.load_dataset("CIFAR100", str(data_dir))
    assert dataset.train_images.shape == (6, 3, 32, 32)
    # A wrong checksum means the archive is not trusted: it is fetched again, which fails offline.
    (data_dir / "cifar-100-python" / "train").unlink()
    monkeypatch.setitem(data.DATASETS["CIFAR100"], "md5", "0" * 32)
    with pytest.raises(data.DataError, match="download failed"):
        data.load_dataset("CIFAR100", str(data_dir))

"""ResNet-18 stems, head-only freezing, weight loading (ImageNet file, medssl files)."""

import pickle

import pytest
import torch
import torchvision

from medssl.errors import MedsslError
from medssl.models import (
    Classifier,
    Encoder,
    imagenet_state_dict,
    load_encoder_weights,
    metadata,
    read_model,
    save_model,
)


@pytest.mark.parametrize("stem,hw", [("imagenet", 1), ("cifar", 4), ("compact", 2)])
def test_stems_shapes(stem, hw):
    enc = Encoder(stem)
    x = torch.rand(2, 1, 28, 28)
    feats = enc.layer4(enc.layer3(enc.layer2(enc.layer1(enc.maxpool(enc.conv1(x))))))
    assert feats.shape == (2, 512, hw, hw)
    model = Classifier(stem)
    assert model(x).shape == (2,)
    assert model.forward_features(x).shape == (2, model.num_features)


def test_unknown_stem():
    with pytest.raises(MedsslError, match="unknown stem"):
        Encoder("vit")


def test_freeze_encoder_keeps_bn_stats_and_weights():
    torch.manual_seed(0)
    model = Classifier("imagenet")
    model.freeze_encoder()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    assert not model.encoder.training and model.head.training
    for _ in range(2):
        loss = model(torch.rand(8, 1, 28, 28)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in model.encoder.state_dict().items():
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)  # incl. BN running stats
    assert all(p.grad is None for p in model.encoder.parameters())


def _write_torchvision_weights(path):
    """A file in torchvision's ImageNet format (random weights; written by the test)."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(state, path)
    return state


def test_imagenet_file_folds_conv1_and_drops_fc(tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"
    state = _write_torchvision_weights(path)
    enc = Encoder("imagenet")
    changes = load_encoder_weights(enc, path)
    assert any("fc" in c for c in changes) and any("folded" in c for c in changes)
    torch.testing.assert_close(enc.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(enc.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    torch.testing.assert_close(enc.bn1.running_var, state["bn1.running_var"])


def test_imagenet_file_with_small_stem_keeps_conv1_random(tmp_path):
    path = tmp_path / "w.pth"
    state = _write_torchvision_weights(path)
    enc = Encoder("cifar")
    conv1 = enc.conv1.weight.clone()
    changes = load_encoder_weights(enc, path)
    assert any("conv1 kept" in c for c in changes)
    torch.testing.assert_close(enc.conv1.weight, conv1)
    torch.testing.assert_close(enc.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_imagenet_offline_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
        "get_state_dict",
        no_network,
        raising=False,
    )
    with pytest.raises(MedsslError, match="--init PATH"):
        imagenet_state_dict()


def test_imagenet_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    state = _write_torchvision_weights(tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    enc = Encoder("imagenet")
    load_encoder_weights(enc, "imagenet")
    torch.testing.assert_close(enc.layer4[0].conv1.weight, state["layer4.0.conv1.weight"])


def test_wrong_files_are_refused(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, bad)
    with pytest.raises(MedsslError, match="not a torchvision ResNet-18"):
        load_encoder_weights(Encoder(), bad)
    shapes = tmp_path / "shapes.pth"
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, shapes)
    with pytest.raises(MedsslError, match="shape"):
        load_encoder_weights(Encoder(), shapes)


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"conv1.weight": Payload()}, f)
    with pytest.raises(MedsslError):
        load_encoder_weights(Encoder(), evil)
    assert not marker.exists()


def test_medssl_files_roundtrip_and_checks(tmp_path):
    torch.manual_seed(0)
    clf = Classifier("compact")
    path = tmp_path / "best.safetensors"
    save_model(clf, path, metadata("classifier", clf.encoder))
    state, meta = read_model(path)
    assert meta["kind"] == "classifier" and meta["stem"] == "compact"
    enc = Encoder("compact")
    changes = load_encoder_weights(enc, path)
    assert any("head was dropped" in c for c in changes)
    torch.testing.assert_close(enc.conv1.weight, clf.encoder.conv1.weight)
    with pytest.raises(MedsslError, match="--stem compact"):
        load_encoder_weights(Encoder("cifar"), path)
    enc_path = tmp_path / "enc.safetensors"
    save_model(clf.encoder, enc_path, metadata("encoder", clf.encoder))
    load_encoder_weights(Encoder("compact"), enc_path)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(MedsslError, match="safetensors"):
        load_encoder_weights(Encoder("compact"), corrupt)


@pytest.mark.parametrize(
    "k,stride,pad,h,w",
    [
        (3, 1, 1, 1, 1),  # layer4's 3x3 convs at 28 px (imagenet stem)
        (3, 2, 1, 2, 2),  # layer4's first conv: 2x2 -> 1x1
        (1, 2, 0, 2, 2),  # the downsample shortcut
        (7, 2, 3, 4, 3),  # a stem conv on a tiny image
        (3, 3, 0, 4, 4),  # single output, input larger than the window
        (3, 1, 1, 2, 3),  # several outputs: plain nn.Conv2d path
        (3, 5, 3, 1, 1),  # padding as wide as the kernel: only padding is seen, plain path
    ],
)
def test_cropped_conv_equals_conv2d(k, stride, pad, h, w):
    from medssl.models import CroppedConv2d

    torch.manual_seed(0)
    plain = torch.nn.Conv2d(5, 4, k, stride=stride, padding=pad, bias=True).double()
    cropped = CroppedConv2d(5, 4, k, stride=stride, padding=pad, bias=True).double()
    cropped.load_state_dict(plain.state_dict())
    x = torch.randn(3, 5, h, w, dtype=torch.float64, requires_grad=True)
    a, b = plain(x), cropped(x)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    g = torch.randn_like(a)
    ga = torch.autograd.grad(a, [x, plain.weight, plain.bias], g)
    gb = torch.autograd.grad(b, [x, cropped.weight, cropped.bias], g)
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-12)


def test_encoder_crops_layer4_at_28px_with_same_values(monkeypatch):
    """The imagenet stem's layer4 runs at 1x1: its convs take the cropped path, and the
    encoder's features and gradients are those of the plain torchvision convolutions."""
    import copy

    from medssl.models import CroppedConv2d

    torch.manual_seed(0)
    enc = Encoder("imagenet").double()
    plain = copy.deepcopy(enc)
    for m in plain.modules():
        if type(m) is CroppedConv2d:
            m.__class__ = torch.nn.Conv2d
    assert list(enc.state_dict()) == list(plain.state_dict())
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    fa, fb = plain(x), enc(x)
    torch.testing.assert_close(fa, fb, rtol=0, atol=1e-10)
    ga = torch.autograd.grad(fa.sum(), list(plain.parameters()))
    gb = torch.autograd.grad(fb.sum(), list(enc.parameters()))
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=1e-10)

    full = []
    real = torch.nn.Conv2d._conv_forward
    monkeypatch.setattr(
        torch.nn.Conv2d, "_conv_forward", lambda self, *a: full.append(self) or real(self, *a)
    )
    enc(x)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    cropped = [
        m
        for m in enc.layer4.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
    ]
    assert len(cropped) == 4  # a 1x1 kernel (the shortcut) has nothing to crop
    assert len(full) == len(convs) - len(cropped)
    assert not any(m in cropped for m in full)

"""Each rule: code it must flag, and near misses it must not (aliases, outside a loop, values
that cannot be known here)."""

from __future__ import annotations

import pytest

FLAGGED = {
    "HST101": [
        "from torch.utils.data import DataLoader as DL\nDL(ds, batch_size=8)\n",
        "import torch\ntorch.utils.data.DataLoader(ds, num_workers=0)\n",
    ],
    "HST102": [
        "import torch\nfor x in xs:\n    m = torch.zeros(3).to(device)\n",
        "import torch as t\nwhile True:\n    m = t.arange(4).cuda()\n",
        "import torch\nfor x in xs:\n    m = torch.ones(2).to('cuda:0')\n",
    ],
    "HST103": [
        "model = Net()\nopt = make(model.parameters())\nmodel.half()\nloss.backward()\n",
    ],
    "HST104": [
        "import torch\nwith torch.autocast('cuda', dtype=torch.float16):\n    loss = f()\n"
        "loss.backward()\n",
        "from torch.cuda.amp import autocast\nwith autocast():\n    loss = f()\nloss.backward()\n",
        "import torch\nwith torch.autocast(device_type='cuda'):\n    loss = f()\nloss.backward()\n",
    ],
    "HST105": [
        "model.eval()\nout = model(x)\n",
        "def predict(model, x):\n    model.eval()\n    return model(x)\n",
    ],
    "HST106": [
        "import torch\nmodel.load_state_dict(sd)\nwith torch.no_grad():\n    y = model(x)\n",
    ],
    "HST107": [
        "import torch\nmodel.eval()\nwith torch.no_grad():\n    y = model(x)\n",
        "import torch\n@torch.no_grad()\ndef run(m, x):\n    return m(x)\n"
        "if __name__ == '__main__':\n    run(m, x)\n",
    ],
    "HST108": [
        "import torch.nn.functional as F\na = F.softmax(q @ k.transpose(-2, -1) / 8, dim=-1)\n",
        "import torch\ndef f(q, k):\n    s = torch.matmul(q, k.mT) * scale\n"
        "    s = s.masked_fill(mask, -1e9)\n    return s.softmax(-1)\n",
        "import torch\nkt = k.transpose(1, 2)\nw = torch.softmax(q @ kt, -1)\n",
    ],
    "HST109": [
        "from torch import nn\nnet = nn.Sequential(nn.Conv2d(3, 8, 3))\nloss.backward()\n",
        "import torchvision\nm = torchvision.models.resnet18()\nm.eval()\n",
    ],
    "HST110": ["import torch\nts = torch.jit.trace(model, x)\n"],
    "HST111": [
        "import torch\ntorch.onnx.export(m, x, 'm.onnx', opset_version=17)\n",
        "import torch\ntorch.onnx.export(m, x, 'm.onnx', opset_version=11, dynamic_axes=d)\n",
    ],
    "HST112": ["from torch import load\nsd = load('w.pt')\n"],
    "HST113": [
        "for x, y in loader:\n    loss = f(x, y)\n    loss.backward()\n    total += loss.item()\n",
        "import lightning as L\nclass M(L.LightningModule):\n    def training_step(self, b, i):\n"
        "        loss = self.f(b)\n        self.log('l', loss.item())\n        return loss\n",
        "def step(x):\n    loss = f(x)\n    loss.backward()\n    return loss.cpu()\n"
        "for x in xs:\n    step(x)\n",
    ],
    "HST114": [
        "import torch\nmodel.to('cuda')\nloss.backward()\n",
        "model = Net().cuda()\nloss.backward()\n",
    ],
    "HST115": [
        "import torch.optim as optim\nopt = optim.AdamW(model.parameters(), lr=1e-3)\n",
        "from torch.optim import Adam as A\nopt = A(params)\n",
    ],
    "HST116": [
        "import keras\nkeras.mixed_precision.set_global_policy('mixed_float16')\n"
        "m = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(1)])\n",
        "import tensorflow as tf\nfrom tensorflow.keras import layers\n"
        "tf.keras.mixed_precision.set_global_policy('mixed_float16')\n"
        "i = tf.keras.Input((4,))\nout = layers.Dense(1)(i)\nm = tf.keras.Model(i, out)\n",
    ],
    "HST117": ["import torch\nx = torch.zeros(3)\nx.require_grad = True\n"],
}

CLEAN = {
    "HST101": [
        "from torch.utils.data import DataLoader\nDataLoader(ds, num_workers=n)\n",
        "from torch.utils.data import DataLoader\nDataLoader(ds, 8, True, None, None, 4)\n",
        "from torch.utils.data import DataLoader\nDataLoader(ds, **kwargs)\n",
        "from mylib import DataLoader\nDataLoader(ds)\n",
    ],
    "HST102": [
        "import torch\nm = torch.zeros(3).to(device)\n",
        "import torch\nfor x in xs:\n    m = torch.zeros(3, device=device)\n",
        "import torch\nfor x in xs:\n    m = torch.zeros(3).to(torch.float16)\n",
        "import torch\nfor x in xs:\n    x = x.to(device)\n",
        "import torch\nfor x in xs:\n    m = torch.from_numpy(a).to(device)\n",
    ],
    "HST103": [
        "import torch\nmodel.parameters()\nmodel.half()\nwith torch.autocast('cuda'):\n"
        "    loss = f()\nloss.backward()\n",
        "model.eval()\nmodel.half()\n",
        "model.parameters()\nx = batch.half()\nloss.backward()\n",
    ],
    "HST104": [
        "import torch\nscaler = torch.amp.GradScaler()\nwith torch.autocast('cuda', "
        "dtype=torch.float16):\n    loss = f()\nscaler.scale(loss).backward()\n",
        "import torch\nwith torch.autocast('cuda', dtype=torch.bfloat16):\n    loss = f()\n"
        "loss.backward()\n",
        "import torch\nwith torch.autocast(device):\n    loss = f()\nloss.backward()\n",
        "import torch\nwith torch.autocast('cuda', dtype=dt):\n    loss = f()\nloss.backward()\n",
        "import torch\nwith torch.autocast('cuda', dtype=torch.float16):\n    y = f()\n",
        "import torch\nwith torch.cuda.amp.autocast(enabled=False):\n    loss = f()\n"
        "loss.backward()\n",
    ],
    "HST105": [
        "import torch\nmodel.eval()\nwith torch.inference_mode():\n    out = model(x)\n",
        "import torch\n@torch.no_grad()\ndef test(model, x):\n    model.eval()\n"
        "    return model(x)\n",
        "import torch\ndef test(model, x):\n    model.eval()\n    return model(x)\n"
        "with torch.no_grad():\n    test(m, x)\n",
        "def test(model, x):\n    model.eval()\n    loss = model(x)\n    loss.backward()\n",
        "model.eval()\nother(x)\n",
    ],
    "HST106": [
        "import torch\nmodel.load_state_dict(sd)\nmodel.eval()\nwith torch.no_grad():\n"
        "    y = model(x)\n",
        "import torch\nwith torch.no_grad():\n    p.copy_(q)\n",
        "import torch\nmodel.load_state_dict(sd)\nmodel.train(False)\nwith torch.no_grad():\n"
        "    y = model(x)\n",
    ],
    "HST107": [
        "import torch\nwith torch.no_grad():\n    y = model(x)\nloss.backward()\n",
        "import torch\ndef helper(m, x):\n    with torch.no_grad():\n        return m(x)\n",
    ],
    "HST108": [
        "import torch.nn.functional as F\na = F.softmax(logits, dim=-1)\n",
        "import torch\na = torch.softmax(x @ w, -1)\n",
        "import torch.nn.functional as F\ns = q @ k.transpose(-2, -1)\nb = F.softmax(other, -1)\n",
    ],
    "HST109": [
        "import torch\nfrom torch import nn\nnet = nn.Conv2d(3, 8, 3)\n"
        "net = net.to(memory_format=torch.channels_last)\nloss.backward()\n",
        "from torch import nn\nnet = nn.Conv2d(3, 8, 3)\n",
        "import torchvision\nm = torchvision.models.vit_b_16()\nm.eval()\n",
    ],
    "HST110": ["import torch\nep = torch.export.export(model, (x,))\n",
               "trace(model, x)\n"],
    "HST111": [
        "import torch\ntorch.onnx.export(m, x, 'm.onnx', opset_version=18, dynamic_axes=d)\n",
        "import torch\ntorch.onnx.export(m, x, 'm.onnx', opset_version=v, dynamic_shapes=s)\n",
        "import torch\ntorch.onnx.export(m, x, 'm.onnx', **options)\n",
    ],
    "HST112": ["import torch\nsd = torch.load('w.pt', weights_only=True)\n",
               "import torch\nsd = torch.load('w.pt', weights_only=False)\n"],
    "HST113": [
        "for x, y in loader:\n    loss = f(x, y)\n    loss.backward()\n"
        "    if i % 100 == 0:\n        print(loss.item())\n",
        "for x, y in loader:\n    loss = f(x, y)\n    loss.backward()\nprint(loss.item())\n",
        "for x in loader:\n    acc += model(x).argmax(1).eq(y).sum().item()\n",
        "def train_step(x):\n    loss = f(x)\n    loss.backward()\n    return loss.item()\n",
        "for epoch in range(3):\n    for x in train:\n        f(x).backward()\n"
        "    for x in val:\n        acc += f(x).item()\n    print(acc.item())\n",
    ],
    "HST114": [
        "import torch\ntorch.backends.cuda.matmul.allow_tf32 = True\nmodel.to('cuda')\n"
        "loss.backward()\n",
        "import torch\ntorch.set_float32_matmul_precision('high')\nmodel.cuda()\nloss.backward()\n",
        "model.to('cuda')\ny = model(x)\n",
        "import torch\nmodel.to('cpu')\nloss.backward()\n",
        "from lightning import Fabric\nf = Fabric(precision='bf16-mixed')\nm.to('cuda')\n"
        "f.backward(loss)\n",
    ],
    "HST115": [
        "import torch\nopt = torch.optim.AdamW(p, lr=1e-3, fused=True)\n",
        "import torch\nopt = torch.optim.Adam(p, foreach=False)\n",
        "import torch\nopt = torch.optim.SGD(p, lr=0.1)\n",
        "import torch\nopt = torch.optim.AdamW(p, **cfg)\n",
    ],
    "HST116": [
        "import keras\nkeras.mixed_precision.set_global_policy('mixed_float16')\n"
        "m = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(1, dtype='float32')])\n",
        "import keras\nm = keras.Sequential([keras.layers.Dense(8), keras.layers.Dense(1)])\n",
        "import keras\nkeras.mixed_precision.set_global_policy('mixed_float16')\n"
        "m = keras.Sequential(layers)\n",
    ],
    "HST117": ["import torch\nx = torch.zeros(3)\nx.requires_grad = True\n"],
}


@pytest.mark.parametrize("code,source",
                         [(c, s) for c, sources in FLAGGED.items() for s in sources])
def test_flagged(codes, code, source):
    assert code in {c for c, _ in codes(source)}


@pytest.mark.parametrize("code,source",
                         [(c, s) for c, sources in CLEAN.items() for s in sources])
def test_near_miss(codes, code, source):
    assert code not in {c for c, _ in codes(source)}


def test_every_rule_has_both_kinds_of_case():
    from hasten.lint import REGISTRY

    assert set(FLAGGED) == set(CLEAN) == set(REGISTRY)

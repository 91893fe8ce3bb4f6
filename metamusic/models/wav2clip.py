"""Wav2CLIP audio encoder: 16 kHz mono audio -> 512-d embedding in CLIP ViT-B/32 image space.

Same computation and parameter names as the public ``Wav2CLIP.pt`` release of
descriptinc/lyrebird-wav2clip (Wu et al., "Wav2CLIP", ICASSP 2022), written without torchaudio
or librosa:

    power spectrogram (n_fft 512, hop 353, periodic Hann, centred, reflect pad)
    -> log(x + 1e-7) -> standardise with the mean and std of the WHOLE batch tensor
    -> ResNet-18 (1 input channel, no classifier) -> 512 -> Linear, ReLU, (Dropout), Linear -> 512

Key layout: ``audio_encoder.*`` (with the persistent buffer ``audio_encoder.spectrogram.window``)
and ``audio_transform.sequential.{0,3}.*``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metamusic.errors import InputError

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 353
EMBED_DIM = 512


def periodic_hann(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Periodic Hann window of length ``n`` (torch.hann_window's default, used by torchaudio)."""
    return torch.hann_window(n, periodic=True, dtype=dtype)


def power_spectrogram(
    audio: torch.Tensor,
    n_fft: int = N_FFT,
    hop_length: int = HOP_LENGTH,
    window: torch.Tensor | None = None,
) -> torch.Tensor:
    """|STFT|^2 of (B, N) audio -> (B, n_fft // 2 + 1, 1 + N // hop_length).

    Same definition as torchaudio.transforms.Spectrogram(n_fft, hop_length=hop_length) with its
    defaults (win_length = n_fft, periodic Hann, center=True, reflect pad, onesided, power 2).
    """
    if audio.dim() != 2:
        raise InputError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
    if audio.shape[-1] <= n_fft // 2:
        raise InputError(
            f"audio clip has {audio.shape[-1]} samples; at least {n_fft // 2 + 1} are needed"
        )
    if window is None:
        window = periodic_hann(n_fft, dtype=audio.dtype).to(audio.device)
    spec = torch.stft(
        audio,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=window.shape[0],
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )  # (B, F, T) complex
    return spec.real.square() + spec.imag.square()  # (B, F, T)


def frame_audio(audio: torch.Tensor, frame_length: int, hop_length: int) -> torch.Tensor:
    """Cut (B, N) audio into (B, 1 + (N - frame_length) // hop_length, frame_length) windows.

    Same windows as librosa.util.frame(audio, frame_length, hop_length) (the original's frame
    mode), laid out window-major; the tail that does not fill a whole window is dropped.
    """
    if audio.dim() != 2:
        raise InputError(f"audio must be (batch, samples), got shape {tuple(audio.shape)}")
    if frame_length < 1 or hop_length < 1:
        raise InputError(
            f"frame_length and hop_length must be positive, got {frame_length} and {hop_length}"
        )
    if audio.shape[-1] < frame_length:
        raise InputError(
            f"audio clip has {audio.shape[-1]} samples, shorter than one frame of {frame_length}"
        )
    return audio.unfold(-1, frame_length, hop_length)  # (B, n_windows, frame_length)


def standardise(x: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """(x - mean) / (std + eps) with ONE mean and unbiased std over the whole tensor (Wav2CLIP)."""
    return (x - x.mean()) / (x.std() + eps)


class Spectrogram(nn.Module):
    """Power spectrogram holding its window as a persistent buffer (key ``window``)."""

    def __init__(self, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", periodic_hann(n_fft))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return power_spectrogram(audio, self.n_fft, self.hop_length, self.window)  # (B, F, T)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN with a (projected when needed) identity shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + shortcut)


class AudioEncoder(nn.Module):
    """Spectrogram + ResNet-18 (1 channel in, BasicBlocks [2, 2, 2, 2]): (B, N) -> (B, 512)."""

    def __init__(self):
        super().__init__()
        self.spectrogram = Spectrogram()
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._stage(64, 64, stride=1)
        self.layer2 = self._stage(64, 128, stride=2)
        self.layer3 = self._stage(128, 256, stride=2)
        self.layer4 = self._stage(256, 512, stride=2)

    @staticmethod
    def _stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.spectrogram(audio).unsqueeze(1)  # (B, 1, F, T)
        x = standardise(torch.log(x + 1e-7))  # statistics of the whole batch, as the original
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))  # (B, 64, F/4, T/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, h, w)
        return x.mean(dim=(2, 3))  # (B, 512): adaptive average pool to 1x1


class AudioTransform(nn.Module):
    """Projection into CLIP image space: Linear 512->512, ReLU, Dropout(0.1), Linear 512->512.

    Index 2 is the original's Dropout(0.1); it is the identity at inference, so it is an Identity
    here (keeps the key indices 0 and 3 of ``sequential``).
    """

    def __init__(self, dim: int = EMBED_DIM):
        super().__init__()
        self.sequential = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Identity(), nn.Linear(dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)  # (B, 512)


class Wav2CLIP(nn.Module):
    """Wav2CLIP: 16 kHz mono audio -> 512-d embedding in CLIP ViT-B/32 image space."""

    sample_rate = SAMPLE_RATE
    embed_dim = EMBED_DIM

    def __init__(self):
        super().__init__()
        self.audio_encoder = AudioEncoder()
        self.audio_transform = AudioTransform()

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Utterance embedding of (B, N) or (N,) audio -> (B, 512) (the original's embed_audio).

        The log spectrogram is standardised with ONE mean/std over the whole batch, so a clip's
        embedding depends on the other clips in the batch; embed one clip per call (B = 1) to
        get what the original gives for that clip alone.
        """
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)  # (1, N)
        audio = audio.to(self.audio_encoder.spectrogram.window)  # model dtype and device
        return self.audio_transform(self.audio_encoder(audio))  # (B, 512)

    @torch.no_grad()
    def embed_frames(
        self, audio: torch.Tensor, frame_length: int = 16000, hop_length: int = 16000
    ) -> torch.Tensor:
        """Per-window embeddings of (B, N) audio -> (B, 512, n_windows) (the original's frame mode).

        All B * n_windows windows go through the encoder as one batch, so (as in the original) the
        log-spectrogram standardisation uses the mean/std of ALL windows of ALL clips together,
        not of each window alone. n_windows = 1 + (N - frame_length) // hop_length.
        """
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)  # (1, N)
        frames = frame_audio(audio, frame_length, hop_length)  # (B, W, L)
        batch, n_windows, length = frames.shape
        feats = self.forward(frames.reshape(batch * n_windows, length))  # (B * W, 512)
        return feats.reshape(batch, n_windows, -1).transpose(1, 2)  # (B, 512, W)

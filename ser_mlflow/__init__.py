"""ser_mlflow: dimensional audiovisual emotion recognition as an MLflow project.

Reproduces and extends Atmaja & Akagi, "Multitask Learning and Multistage Fusion for
Dimensional Audiovisual Emotion Recognition" (ICASSP 2020). Heavy imports (TensorFlow,
MLflow) stay inside the modules that need them, so ``metrics`` and ``fusion`` import fast.
"""

__version__ = "0.1.0"

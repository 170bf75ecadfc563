"""The judges: the classifiers (classifier), what they measure (quality, evidence), the arms
evaluate compares (arms, smote), the gate that decides on them, and train's validation judge."""

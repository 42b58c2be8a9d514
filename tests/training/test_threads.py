"""TrainerConfig.num_threads is honoured by the Trainer itself (plain Python, no application)."""

import torch


def test_the_trainer_uses_the_configured_threads_and_none_leaves_torch_alone(make_trainer):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        make_trainer(nb_training_epochs=1, num_threads=1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        make_trainer(nb_training_epochs=1)  # num_threads=None: what the user set stays
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

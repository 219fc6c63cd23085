"""A scripted demonstrator for FrankaKitchen-v1: differential IK through per-subtask waypoints.

FrankaKitchen-v1 acts in joint velocities (action in [-1, 1] -> ±2 rad/s) that become position-servo targets
anchored at the last observed joint angles. The controller therefore
1. reads the *true* simulator state (privileged, fine for a data generator),
2. turns an end-effector pose error into a joint displacement by damped least squares on the `end_effector`
   site Jacobian, with joints at their limits clamped and re-solved, and a null-space pull to the home posture,
3. inverts the servo: the joints are heavily damped (a first-order lag, tau = damping / kp), gravity is not
   compensated, and the target is re-anchored every step, so the action carries a lag-compensating gain and a
   gravity feedforward.
Each subtask is a short program of phases (transit, contact, act, retreat) built from the live handle and
joint positions when the subtask starts, so subtasks chain in any order and directly, without a return to a
neutral pose. Transits move in joint space to a posture found by kinematic IK from the home posture (chained
Cartesian moves drift into near-singular postures and stall), through a via point pulled back from the
kitchen front when they change height a lot; a Cartesian alignment follows. A subtask whose program ends
short of its goal is re-run once from the live state. Variation (the data must not be one trajectory):
start-pose perturbation, waypoint jitter, speed, and small Gaussian action noise in free-space phases only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import mujoco
import numpy as np

from tasks.kitchen.env import SUBTASKS, subtask_done

OPEN, CLOSED = 1.0, -1.0

# Home orientation of the end-effector site: approach axis (site z) = world +y (into the kitchen),
# finger-closing axis (site y) = world +x. Columns are the site axes in world coordinates.
R_HOME = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
HOME_ARM_QPOS = np.array([0.148, -1.768, 1.844, -2.477, 0.260, 0.713, 1.595])
# Effective arm joint limits: the model's ranges intersected with the env's servo-target clip (franka_config
# pos_bound); joint 6 cannot go below 0 although the model allows -1.66.
ARM_Q_LOW = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, 0.0, -2.8973])
ARM_Q_HIGH = np.array([2.8973, 1.7628, 2.8973, -0.4, 2.8973, 2.1127, 2.8973])


def roty(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rotz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_error(r_target: np.ndarray, r_now: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) that rotates `r_now` onto `r_target`."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, (r_target @ r_now.T).reshape(-1))
    vel = np.zeros(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = np.linalg.norm(v)
    return v if n <= limit else v * (limit / n)


@dataclass
class ControllerConfig:
    max_lin_speed: float = 0.6  # m/s of the end effector
    max_ang_speed: float = 1.5  # rad/s
    dls_damping: float = 0.05  # lambda of damped least squares
    nullspace_gain: float = 0.2  # fraction of the home-posture error removed per step in the null space
    limit_margin: float = 0.01  # rad kept from the effective joint limits


class DiffIKController:
    """End-effector pose target -> FrankaKitchen-v1 joint-velocity action."""

    def __init__(self, kitchen, config: ControllerConfig | None = None):
        self.cfg = config or ControllerConfig()
        self.kitchen = kitchen  # the unwrapped KitchenEnv
        self.model, self.data = kitchen.model, kitchen.data
        robot = kitchen.robot_env
        self.dt = robot.dt
        self.site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, "end_effector")
        # Effective limits: the model's joint range intersected with the env's servo target clip (pos_bound);
        # e.g. joint 6 cannot go below 0 although the model allows -1.66.
        self.q_low = np.maximum(self.model.jnt_range[:7, 0], robot.robot_pos_bound[:7, 0]) + self.cfg.limit_margin
        self.q_high = np.minimum(self.model.jnt_range[:7, 1], robot.robot_pos_bound[:7, 1]) - self.cfg.limit_margin
        kp = self.model.actuator_gainprm[:7, 0]
        damping = self.model.dof_damping[:7]
        # Servo as a first-order lag: one step covers (1 - exp(-kp dt / D)) of the commanded displacement.
        self.lag_gain = 1.0 / (1.0 - np.exp(-kp * self.dt / damping))
        self.kp = kp
        self.act_range = robot.act_rng[:7]
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

    @property
    def ee_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.site].copy()

    @property
    def ee_rot(self) -> np.ndarray:
        return self.data.site_xmat[self.site].reshape(3, 3).copy()

    def joint_step(self, pos: np.ndarray, rot: np.ndarray, speed: float) -> np.ndarray:
        """Joint displacement for this step towards the pose (pos, rot): limit-clamped DLS, plus a null-space
        pull towards the home posture."""
        dt, cfg = self.dt, self.cfg
        twist = np.concatenate([
            clip_norm(pos - self.ee_pos, cfg.max_lin_speed * speed * dt),
            clip_norm(rotation_error(rot, self.ee_rot), cfg.max_ang_speed * speed * dt),
        ])
        mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
        jac = np.vstack([self._jacp[:, :7], self._jacr[:, :7]])
        q = self.data.qpos[:7]
        free = np.ones(7, dtype=bool)
        dq = np.zeros(7)
        for _ in range(3):  # clamp joints that would cross a limit and re-solve with the rest
            j = jac[:, free]
            jjt = j @ j.T + cfg.dls_damping**2 * np.eye(6)
            j_pinv = j.T @ np.linalg.solve(jjt, np.eye(6))
            dq_free = j_pinv @ twist
            null = np.eye(j.shape[1]) - j_pinv @ j
            dq_free += null @ (cfg.nullspace_gain * (HOME_ARM_QPOS[free] - q[free]))
            dq = np.zeros(7)
            dq[free] = dq_free
            blocked = free & (((q + dq) < self.q_low) & (dq < 0) | ((q + dq) > self.q_high) & (dq > 0))
            if not blocked.any():
                break
            free &= ~blocked
            if not free.any():
                return np.zeros(7)
        return dq

    def solve_ik(self, pos: np.ndarray, rot: np.ndarray, iterations: int = 60) -> np.ndarray:
        """Arm joints that put the end effector at (pos, rot), searched from the home posture (kinematics only).

        Transits between subtasks move in joint space to this posture: Cartesian moves chained from one
        subtask's end posture to the next drift into odd, near-singular configurations."""
        data = mujoco.MjData(self.model)
        data.qpos[:] = self.data.qpos
        data.qpos[:7] = HOME_ARM_QPOS
        jacp, jacr = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        for _ in range(iterations):
            mujoco.mj_kinematics(self.model, data)
            mujoco.mj_comPos(self.model, data)
            err = np.concatenate([pos - data.site_xpos[self.site],
                                  rotation_error(rot, data.site_xmat[self.site].reshape(3, 3))])
            if np.linalg.norm(err[:3]) < 1e-3 and np.linalg.norm(err[3:]) < 1e-2:
                break
            mujoco.mj_jacSite(self.model, data, jacp, jacr, self.site)
            jac = np.vstack([jacp[:, :7], jacr[:, :7]])
            q = data.qpos[:7]
            step = jac.T @ np.linalg.solve(jac @ jac.T + self.cfg.dls_damping**2 * np.eye(6), clip_norm(err, 0.2))
            step += 0.1 * (HOME_ARM_QPOS - q - np.linalg.pinv(jac) @ (jac @ (HOME_ARM_QPOS - q)))
            data.qpos[:7] = np.clip(q + step, self.q_low, self.q_high)
        return data.qpos[:7].copy()

    def joint_action(self, q_goal: np.ndarray, gripper: float, speed: float = 1.0, max_joint_speed: float = 1.0) -> np.ndarray:
        """Move all arm joints straight towards `q_goal` (joint space), at most `max_joint_speed` rad/s."""
        delta = q_goal - self.data.qpos[:7]
        limit = max_joint_speed * speed * self.dt
        peak = np.max(np.abs(delta))
        dq = delta if peak <= limit else delta * (limit / peak)
        return self._servo_action(dq, gripper)

    def action(self, pos: np.ndarray, rot: np.ndarray, gripper: float, speed: float = 1.0) -> np.ndarray:
        """Action for one Cartesian step towards the pose (pos, rot)."""
        return self._servo_action(self.joint_step(pos, rot, speed), gripper)

    def _servo_action(self, dq: np.ndarray, gripper: float) -> np.ndarray:
        # Servo inversion: the env sets target = last observed qpos + act_rng * a * dt. We want
        # target = q_true + lag_gain * dq + gravity offset (qfrc_bias / kp), so anchor on the true state.
        q_true = self.data.qpos[:7]
        q_obs = self.kitchen.robot_env._last_robot_qpos[:7]
        gravity = self.data.qfrc_bias[:7] / self.kp
        motion = self.lag_gain * dq / (self.act_range * self.dt)
        offset = (q_true - q_obs + gravity) / (self.act_range * self.dt)
        # Saturate by scaling the motion part uniformly (per-joint clipping would bend the path).
        peak = np.max(np.abs(motion + offset))
        if peak > 1.0:
            room = np.clip((1.0 - np.abs(offset)) / np.maximum(np.abs(motion), 1e-9), 0.0, 1.0)
            motion = motion * float(np.min(room))
        arm = np.clip(motion + offset, -1.0, 1.0)
        return np.concatenate([arm, [gripper, gripper]])


# --------------------------------------------------------------------------------------------------------
# Subtask programs


@dataclass
class Phase:
    """Drive the end effector to `target(scene)` until within `tol` (or `done(scene)`, or `max_steps`)."""

    name: str
    target: Callable[["Scene"], tuple[np.ndarray, np.ndarray]]
    gripper: float
    tol: float = 0.015
    max_steps: int = 40
    done: Callable[["Scene"], bool] | None = None
    free_space: bool = False  # action noise only here: contact phases are sensitive
    rot_tol: float = 0.15
    min_steps: int = 0  # e.g. let the fingers close before the phase may end
    joint_space: bool = False  # transit: move the joints straight to the IK solution of the target pose


class Scene:
    """Live positions of sites and joints (privileged simulator state)."""

    def __init__(self, kitchen):
        self.model, self.data = kitchen.model, kitchen.data

    def site(self, name: str) -> np.ndarray:
        return self.data.site(name).xpos.copy()

    def joint(self, name: str) -> float:
        return float(self.data.joint(name).qpos[0])

    def done(self, subtask: str) -> bool:
        return subtask_done(self.data.qpos, subtask)


@dataclass
class Style:
    """Per-episode variation of the demonstrations."""

    jitter: float = 0.01  # m, free-space waypoint jitter (contact waypoints get a fraction of it)
    speed: float = 1.0  # multiplier of the controller's speed limits
    action_noise: float = 0.0  # std of Gaussian noise on arm actions in free-space phases


def fixed(pos: np.ndarray, rot: np.ndarray):
    pos, rot = np.array(pos, dtype=float), np.array(rot, dtype=float)
    return lambda scene: (pos, rot)


def jitter(rng: np.random.Generator, scale: float) -> np.ndarray:
    return rng.uniform(-scale, scale, size=3)


def transit(scene: Scene, target, gripper: float, align=None, align_tol: float = 0.008,
            align_rot_tol: float = 0.15) -> list[Phase]:
    """Free-space move to a pre-contact pose: joint space to its IK posture (coarse), then a short Cartesian
    alignment on `align` (default: the same pose).

    A joint-space path between a low and a high posture bulges forward into the kitchen front (knobs);
    such moves first pass a via point between them, pulled back towards the robot."""
    start, (goal, rot) = scene.site("end_effector"), target(scene)
    phases = []
    if abs(goal[2] - start[2]) > 0.25:
        via = (start + goal) / 2
        via[1] = min(start[1], goal[1]) - 0.08
        phases.append(Phase("via", fixed(via, rot), gripper, tol=0.12, max_steps=40, free_space=True, joint_space=True))
    return phases + [
        Phase("transit", target, gripper, tol=0.05, max_steps=60, free_space=True, joint_space=True),
        Phase("align", align or target, gripper, tol=align_tol, max_steps=12, rot_tol=align_rot_tol),
    ]


def knob_program(scene: Scene, rng, style: Style, subtask: str) -> list[Phase]:
    # Grasping and twisting slips (weak grip vs knob damping); open fingers at their stop act as rigid posts
    # on the grip bar instead: slide the open hand over the bar with extra room on the +x side, shift so the
    # +x finger bears on the bar, and roll the hand about world +y. A retry finds the knob part-turned, so
    # every offset and the hand roll start from the knob's current angle.
    site = {"bottom_burner": "knob2_site", "top_burner": "knob4_site"}[subtask]
    joint = {"bottom_burner": "knob_Joint_2", "top_burner": "knob_Joint_4"}[subtask]
    knob = scene.site(site)
    start_roll = max(0.0, -scene.joint(joint))  # the knob turns about -y: hand roll about +y
    r_start = roty(start_roll)
    contact = knob + r_start @ np.array([-0.012, -0.025, 0.0]) + jitter(rng, 0.002)
    inserted = contact + r_start @ np.array([-0.010, 0.0, 0.0])  # the +x finger clears the bar by ~1.4 cm
    # The open fingers straddle the grip bar with little to spare: line up exactly before going in.
    pre = inserted + np.array([0.0, -0.09, 0.0])
    # Roll past the goal angle and stop on the knob angle: the knob lags the hand by the finger's slack.
    # (Over-turning fails too: a knob at -1.32 is more than 0.3 from its goal.)
    roll = 1.10 + rng.uniform(-0.03, 0.03)
    r_in = r_start @ R_HOME
    return [
        *transit(scene, fixed(pre + jitter(rng, style.jitter), r_in), OPEN, align=fixed(pre, r_in), align_tol=0.004,
                 align_rot_tol=0.03),
        # (The fingertips, 4.6 cm ahead of the end-effector site, touch the knob's disk just before the
        # exact targets: these phases usually end on their step bound.)
        Phase("insert", fixed(inserted, r_in), OPEN, tol=0.008, max_steps=12),
        Phase("seat", fixed(contact, r_in), OPEN, tol=0.004, max_steps=6),
        Phase("turn", fixed(contact, roty(roll) @ R_HOME), OPEN, max_steps=25, tol=0.0,
              done=lambda s: s.joint(joint) < -0.84),
        # Back straight off the bar before the hand unrolls, or the unrolling turns the knob back.
        Phase("retreat", lambda s: (contact + np.array([0.0, -0.08, 0.0]), s.data.site("end_effector").xmat.reshape(3, 3).copy()),
              OPEN, tol=0.015, max_steps=15),
    ]


def light_program(scene: Scene, rng, style: Style, subtask: str) -> list[Phase]:
    # Push the lever tip towards -x with the closed hand.
    tip = scene.site("light_site")
    side = tip + np.array([0.055, 0.0, 0.0]) + jitter(rng, 0.004)
    pre = side + np.array([0.0, -0.10, 0.0]) + jitter(rng, style.jitter)
    push = tip + np.array([-0.11, 0.0, 0.0]) + jitter(rng, 0.005)
    return [
        *transit(scene, fixed(pre, R_HOME), CLOSED),
        Phase("insert", fixed(side, R_HOME), CLOSED, tol=0.01, max_steps=20),
        Phase("push", fixed(push, R_HOME), CLOSED, tol=0.01, max_steps=25, done=lambda s: s.joint("light_switch") < -0.6),
        Phase("retreat", lambda s: (s.site("end_effector") + np.array([0.0, -0.06, 0.0]), R_HOME), CLOSED, tol=0.0,
              min_steps=4, max_steps=4, free_space=True),
    ]


def slide_program(scene: Scene, rng, style: Style, subtask: str) -> list[Phase]:
    # Push the sliding door along +x from the left of its handle bar.
    handle = scene.site("slide_site")
    side = handle + np.array([-0.065, 0.0, 0.0]) + jitter(rng, 0.006)
    pre = side + np.array([0.0, -0.10, 0.0]) + jitter(rng, style.jitter)
    push = handle + np.array([0.30, 0.0, 0.0])
    return [
        *transit(scene, fixed(pre, R_HOME), CLOSED),
        Phase("insert", fixed(side, R_HOME), CLOSED, tol=0.012, max_steps=20),
        Phase("push", fixed(push, R_HOME), CLOSED, tol=0.01, max_steps=40, done=lambda s: s.joint("slide_cabinet") > 0.33),
        Phase("retreat", lambda s: (s.site("slide_site") + np.array([0.0, -0.10, 0.0]), R_HOME), CLOSED, tol=0.03,
              max_steps=15, free_space=True),
    ]


def door_arc(scene: Scene, joint: str, hinge_xy: np.ndarray, h0: np.ndarray, phi0: float, lead: float,
             rot_of_phi: Callable[[float], np.ndarray]):
    """Hand target on the handle's circle about the hinge, `lead` rad ahead of the door (closed loop)."""

    def target(s: Scene):
        phi = s.joint(joint)
        rel = h0.copy()
        rel[:2] -= hinge_xy
        p = rotz(phi - phi0 + lead) @ rel
        p[:2] += hinge_xy
        return p, rot_of_phi(phi)

    return target


def microwave_program(scene: Scene, rng, style: Style, subtask: str) -> list[Phase]:
    handle = scene.site("microhandle_site")
    yaw = 0.3  # the microwave door is yawed 0.3 rad: outward normal (sin 0.3, -cos 0.3, 0)
    normal = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    r_face = rotz(yaw) @ R_HOME
    phi0 = scene.joint("microwave")
    grasp = handle + jitter(rng, 0.004) * np.array([1, 1, 3])
    hinge_xy = np.array([-1.128, 0.455])
    lead = -(0.12 + rng.uniform(-0.02, 0.02))
    return [
        *transit(scene, fixed(handle + 0.22 * normal + np.array([0, 0, 0.06]) + jitter(rng, style.jitter), r_face), OPEN),
        Phase("pregrasp", fixed(grasp + 0.10 * normal, r_face), OPEN, tol=0.012, max_steps=25),
        Phase("reach", fixed(grasp, r_face), OPEN, tol=0.008, max_steps=20),
        Phase("grasp", fixed(grasp, r_face), CLOSED, tol=1.0, min_steps=3, max_steps=3),
        Phase("pull", door_arc(scene, "microwave", hinge_xy, grasp, phi0, lead, lambda phi: r_face), CLOSED,
              tol=0.0, max_steps=60, done=lambda s: s.joint("microwave") < -0.78),
        Phase("release", lambda s: (s.site("end_effector"), r_face), OPEN, tol=1.0, min_steps=2, max_steps=2),
        Phase("retreat", lambda s: (s.site("end_effector") + 0.08 * np.array([np.sin(yaw - 0.75), -np.cos(yaw - 0.75), 0]),
                                    r_face), OPEN, tol=1.0, min_steps=5, max_steps=5, free_space=True),
    ]


def door_normal(phi: float) -> np.ndarray:
    """Outward normal of the right hinge door at angle phi (-y when closed)."""
    return np.array([np.sin(phi), -np.cos(phi), 0.0])


def hinge_program(scene: Scene, rng, style: Style, subtask: str) -> list[Phase]:
    handle = scene.site("hinge_site2")
    hinge_xy = np.array([-0.224, 0.71])
    phi0 = scene.joint("right_hinge_cabinet")
    grasp = handle + jitter(rng, 0.004) * np.array([1, 1, 3])
    lead = 0.12 + rng.uniform(-0.02, 0.02)
    # A fully co-rotating hand is out of reach near 1.4 rad: yaw it by half the door angle, the bar turns
    # inside the fingers.
    return [
        *transit(scene, fixed(grasp + np.array([0, -0.10, 0]) + jitter(rng, style.jitter), R_HOME), OPEN),
        Phase("reach", fixed(grasp, R_HOME), OPEN, tol=0.012, max_steps=7),
        Phase("grasp", fixed(grasp, R_HOME), CLOSED, tol=1.0, min_steps=3, max_steps=3),
        Phase("pull", door_arc(scene, "right_hinge_cabinet", hinge_xy, grasp, phi0, lead, lambda phi: rotz(0.5 * phi) @ R_HOME),
              CLOSED, tol=0.0, max_steps=120, done=lambda s: s.joint("right_hinge_cabinet") > 1.50),
        Phase("release", lambda s: (s.site("end_effector"), s.data.site("end_effector").xmat.reshape(3, 3).copy()), OPEN,
              tol=1.0, min_steps=3, max_steps=3),
        # Leave along the open door's outward normal, then step out in front of its edge: the open door
        # stands in the way of every other handle, and a transit through it would push it shut.
        Phase("retreat", lambda s: (s.site("end_effector") + 0.03 * door_normal(s.joint("right_hinge_cabinet")),
                                    rotz(0.6) @ R_HOME), OPEN, tol=1.0, min_steps=3, max_steps=3, free_space=True),
        Phase("clear", lambda s: (s.site("hinge_site2") + np.array([0.06, -0.14, -0.05]), rotz(0.3) @ R_HOME), OPEN,
              tol=0.03, max_steps=15, free_space=True),
        Phase("below", fixed(np.array([-0.20, 0.28, 2.15]) + jitter(rng, style.jitter), R_HOME), OPEN, tol=0.05,
              max_steps=16, free_space=True),
    ]


def kettle_program(scene: Scene, rng, style: Style, subtask: str) -> list[Phase]:
    # Grasp the top handle bar (along x) from front-above with the approach pitched 45 deg down; fingers
    # close across the bar in the y-z plane. Horizontal or rolled grasps run into joint limits.
    handle = scene.site("kettle_site")
    approach = np.array([0.0, np.cos(np.pi / 4), -np.sin(np.pi / 4)])
    fingers = np.array([0.0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    r_grasp = np.column_stack([np.cross(fingers, approach), fingers, approach])
    grasp = handle + jitter(rng, 0.004)
    goal_handle = np.array([-0.234, 0.748, handle[2] + 0.01]) + np.array([*rng.uniform(-0.01, 0.01, 2), 0.0])
    lift = 0.10 + rng.uniform(0.0, 0.03)
    return [
        *transit(scene, fixed(grasp - 0.12 * approach + jitter(rng, style.jitter), r_grasp), OPEN),
        Phase("reach", fixed(grasp, r_grasp), OPEN, tol=0.008, max_steps=25),
        Phase("grasp", fixed(grasp, r_grasp), CLOSED, tol=1.0, min_steps=3, max_steps=3),
        Phase("lift", fixed(grasp + np.array([0, 0, lift]), r_grasp), CLOSED, tol=0.02, max_steps=20),
        Phase("carry", fixed(goal_handle + np.array([0, 0, lift]), r_grasp), CLOSED, tol=0.015, max_steps=40),
        Phase("lower", fixed(goal_handle, r_grasp), CLOSED, tol=0.01, max_steps=25),
        Phase("release", fixed(goal_handle, r_grasp), OPEN, tol=1.0, min_steps=2, max_steps=2),
        # Back off up and out from under the knob panel: the next transit must clear the kettle and the knobs
        Phase("retreat", fixed(goal_handle - 0.15 * approach, r_grasp), OPEN, tol=0.02, max_steps=12, free_space=True),
        Phase("clear", fixed(goal_handle + np.array([0.0, -0.22, 0.12]) + jitter(rng, style.jitter), R_HOME), OPEN,
              tol=0.05, max_steps=10, free_space=True),
    ]


PROGRAMS: dict[str, Callable[..., list[Phase]]] = {
    "bottom_burner": knob_program, "top_burner": knob_program, "light_switch": light_program,
    "slide_cabinet": slide_program, "hinge_cabinet": hinge_program, "microwave": microwave_program,
    "kettle": kettle_program,
}
assert set(PROGRAMS) == set(SUBTASKS)


@dataclass
class Demonstration:
    subtasks: tuple[str, ...]
    observations: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminations: list[bool] = field(default_factory=list)
    truncations: list[bool] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)  # credited subtasks after each step (and at reset)
    subtask_steps: list[int] = field(default_factory=list)  # env steps spent per subtask program
    phase_log: list[tuple[str, str, int, bool]] = field(default_factory=list)  # (subtask, phase, steps, reached)
    subtask_tries: list[int] = field(default_factory=list)  # program runs per subtask (1 + retries used)
    subtask_success: list[bool] = field(default_factory=list)  # in its goal state when its program ended
    final_state_ok: bool = False  # every subtask still in its goal state at the end of the episode

    @property
    def n_completed(self) -> int:
        return self.completed[-1]


class Demonstrator:
    """Runs subtask programs in an `OrderedKitchenEnv` (from `make_kitchen_env`) and records the episode."""

    def __init__(self, env, controller_config: ControllerConfig | None = None, retries: int = 1):
        self.env = env
        self.retries = retries  # re-run a subtask's program (from the live state) when it ended short of its goal
        self.kitchen = env.unwrapped
        self.controller = DiffIKController(self.kitchen, controller_config)
        self.scene = Scene(self.kitchen)

    def run(self, subtasks: tuple[str, ...], rng: np.random.Generator, style: Style, seed: int | None = None,
            init_robot_qpos: np.ndarray | None = None) -> Demonstration:
        demo = Demonstration(tuple(subtasks))
        obs, info = self.env.reset(seed=seed, options={"init_robot_qpos": init_robot_qpos})
        demo.observations.append(obs)
        demo.completed.append(info["completed_subtasks"])
        over = False
        for subtask in subtasks:
            start, tries = len(demo.actions), 0
            # Programs are built from the live state when they start, so a retry resumes from wherever the
            # previous try left the object (e.g. a part-turned knob).
            while not over and tries <= self.retries and not self.scene.done(subtask):
                tries += 1
                for phase in PROGRAMS[subtask](self.scene, rng, style, subtask):
                    over = self._run_phase(phase, subtask, demo, rng, style)
                    if over:
                        break
            demo.subtask_steps.append(len(demo.actions) - start)
            demo.subtask_tries.append(tries)
            demo.subtask_success.append(self.scene.done(subtask))
            if over:
                break
        demo.final_state_ok = all(self.scene.done(s) for s in subtasks)
        return demo

    def _run_phase(self, phase: Phase, subtask: str, demo: Demonstration, rng, style: Style) -> bool:
        """Step the env through one phase, recording it; True when the episode ended."""
        start, reached = len(demo.actions), False
        if phase.joint_space:
            q_goal = self.controller.solve_ik(*phase.target(self.scene))
        for _ in range(phase.max_steps):
            pos, rot = phase.target(self.scene)
            if phase.done is not None:
                reached = phase.done(self.scene)
            elif phase.joint_space:
                reached = np.max(np.abs(q_goal - self.kitchen.data.qpos[:7])) < phase.tol
            else:
                reached = (np.linalg.norm(pos - self.controller.ee_pos) < phase.tol
                           and np.linalg.norm(rotation_error(rot, self.controller.ee_rot)) < phase.rot_tol)
            if reached and len(demo.actions) - start >= phase.min_steps:
                break
            if phase.joint_space:
                action = self.controller.joint_action(q_goal, phase.gripper, style.speed)
            else:
                action = self.controller.action(pos, rot, phase.gripper, style.speed)
            if phase.free_space and style.action_noise > 0:
                action[:7] += rng.normal(0.0, style.action_noise, size=7)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)  # stored exactly as stepped
            obs, reward, terminated, truncated, info = self.env.step(action)
            demo.observations.append(obs)
            demo.actions.append(action)
            demo.rewards.append(reward)
            demo.terminations.append(bool(terminated))
            demo.truncations.append(bool(truncated))
            demo.completed.append(info["completed_subtasks"])
            if terminated or truncated:
                demo.phase_log.append((subtask, phase.name, len(demo.actions) - start, reached))
                return True
        demo.phase_log.append((subtask, phase.name, len(demo.actions) - start, bool(reached)))
        return False
